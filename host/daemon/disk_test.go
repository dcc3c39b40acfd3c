package daemon

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// fakeDiskAgent is an agent session that answers a disk stream with the usages sent on
// updates, or, when old is set, refuses it as an agent from before the disk stream does.
func fakeDiskAgent(t *testing.T, updates <-chan proto.DiskUsage, old bool) *agentClient {
	t.Helper()
	hostEnd, guestEnd := net.Pipe()
	sess, err := yamux.Server(guestEnd, proto.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	go func() {
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				var req proto.Request
				if proto.ReadJSONLine(st, &req) != nil {
					return
				}
				if old || req.Type != proto.TypeDisk {
					proto.WriteJSONLine(st, proto.Response{Error: `unknown request type "` + req.Type + `"`})
					return
				}
				proto.WriteJSONLine(st, proto.Response{})
				for u := range updates {
					if proto.WriteJSONLine(st, u) != nil {
						return
					}
				}
			}()
		}
	}()
	agent, err := newAgentClient(hostEnd, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.close)
	return agent
}

// runningDaemon is a daemon in the Running state whose guest reported used of total bytes
// at boot.
func runningDaemon(used, total uint64) *Daemon {
	return &Daemon{
		log: slog.New(slog.DiscardHandler),
		status: api.Status{State: api.StateRunning,
			Guest: &api.Guest{Engine: api.EngineRunning, DataDisk: api.DiskUsage{Used: used, Total: total}}},
	}
}

func nextEvent(t *testing.T, ch <-chan api.Event) api.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return api.Event{}
}

func TestFollowDisk(t *testing.T) {
	const gib = 1 << 30
	updates := make(chan proto.DiskUsage)
	defer close(updates)
	agent := fakeDiskAgent(t, updates, false)
	d := runningDaemon(2*gib, 4*gib)
	events, cancel := d.subscribe()
	defer cancel()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go d.followDisk(ctx, agent)

	for _, used := range []uint64{3900 << 20, 1 * gib} {
		updates <- proto.DiskUsage{Used: used, Total: 4 * gib}
		ev := nextEvent(t, events)
		if ev.Type != api.EventDisk || ev.State != api.StateRunning || ev.Disk == nil || ev.Disk.Used != used || ev.Disk.Total != 4*gib {
			t.Fatalf("event %+v, want a disk event with %d of %d used", ev, used, 4*gib)
		}
		if ev.Message == "" || ev.Error != "" {
			t.Errorf("event message %q, error %q", ev.Message, ev.Error)
		}
		// The status shows the same usage the event announced.
		if g := d.Status().Guest; g.DataDisk.Used != used || g.Engine != api.EngineRunning {
			t.Errorf("status guest %+v, want %d used", g, used)
		}
	}

	// A late subscriber gets the latest usage, not every update of the run.
	d.publish(api.Event{State: api.StateRunning, Message: "something else"})
	late, cancelLate := d.subscribe()
	defer cancelLate()
	var disk []api.Event
	for len(late) > 0 {
		if ev := <-late; ev.Type == api.EventDisk {
			disk = append(disk, ev)
		}
	}
	if len(disk) != 1 || disk[0].Disk.Used != 1*gib {
		t.Errorf("replayed disk events %+v, want only the latest", disk)
	}
}

func TestFollowDiskOldAgent(t *testing.T) {
	agent := fakeDiskAgent(t, nil, true)
	d := runningDaemon(1<<30, 4<<30)
	err := d.followDisk(t.Context(), agent)
	if err == nil || !strings.Contains(err.Error(), "unknown request type") {
		t.Fatalf("followDisk against an old agent: %v", err)
	}
	if g := d.Status().Guest; g.DataDisk.Used != 1<<30 {
		t.Errorf("the boot-time usage changed: %+v", g.DataDisk)
	}
}
