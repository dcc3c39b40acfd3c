package daemon

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// followDisk applies every data-disk usage the agent reports until the stream ends. An
// agent older than the disk stream refuses it, and the status keeps the boot-time value.
func (d *Daemon) followDisk(ctx context.Context, agent *agentClient) error {
	return followUpdates(ctx, agent, proto.TypeDisk, d.log, d.setDisk)
}

// setDisk records the data disk's usage in the status and announces it as a disk event.
func (d *Daemon) setDisk(u proto.DiskUsage) {
	d.mu.Lock()
	if d.status.Guest != nil {
		d.status.Guest.DataDisk = u
	}
	state := d.status.State
	d.mu.Unlock()
	d.log.Debug("data disk usage", "used", u.Used, "total", u.Total)
	d.publish(api.Event{Type: api.EventDisk, State: state, Disk: &u,
		Message: fmt.Sprintf("data disk: %.1f of %.1f GiB used (%.0f%%)",
			float64(u.Used)/(1<<30), float64(u.Total)/(1<<30), 100*float64(u.Used)/float64(max(u.Total, 1)))})
}
