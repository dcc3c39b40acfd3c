package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/store"
)

// ContextName is the docker context of a cluster: berth-NAME.
func ContextName(name string) string { return "berth-" + name }

// PointContext writes the cluster's docker context to the first member, other than skip,
// that runs and has the swarm's control plane (a manager: the record's first, then any the
// user promoted), and returns it. `berth cluster create`, `start` and `status` call it,
// and so does a member's hostd when it stops or its VM dies while the context points at
// it, so the context moves to another manager by itself.
func PointContext(ctx context.Context, rec *Record, skip string) (string, error) {
	members := rec.Managers()
	for _, m := range rec.Members {
		if m.Role != RoleManager {
			members = append(members, m)
		}
	}
	for _, m := range members {
		if m.Instance == skip {
			continue
		}
		inst, err := store.Open(m.Instance)
		if err != nil || inst.DaemonPID() == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := NewEngine(inst.Path(store.DockerSock)).Swarm(sctx)
		cancel()
		if err != nil || !s.ControlAvailable {
			continue
		}
		return m.Instance, dockerctx.Ensure(ContextName(rec.Name), "unix://"+inst.Path(store.DockerSock),
			fmt.Sprintf("berth cluster %q (manager %s)", rec.Name, m.Instance))
	}
	return "", fmt.Errorf("cluster %q: no other manager is running; start one with `berth cluster start %s`", rec.Name, rec.Name)
}

// ContextOn returns the member the cluster's docker context points at, or "" when it
// does not exist or points elsewhere.
func ContextOn(rec *Record) string {
	host, err := dockerctx.Host(ContextName(rec.Name))
	if err != nil || host == "" {
		return ""
	}
	for _, m := range rec.Members {
		if inst, err := store.Open(m.Instance); err == nil && host == "unix://"+inst.Path(store.DockerSock) {
			return m.Instance
		}
	}
	return ""
}
