package daemon

import (
	"context"
	"fmt"
	"os"

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
		d.status.Guest.DataDisk = apiDisk(u)
	}
	state := d.status.State
	d.mu.Unlock()
	d.log.Debug("data disk usage", "used", u.Used, "total", u.Total)
	du := apiDisk(u)
	d.publish(api.Event{Type: api.EventDisk, State: state, Disk: &du,
		Message: fmt.Sprintf("data disk: %.1f of %.1f GiB used (%.0f%%)",
			float64(u.Used)/(1<<30), float64(u.Total)/(1<<30), 100*float64(u.Used)/float64(max(u.Total, 1)))})
}

// prepareDataDisk creates the sparse data disk or grows it to sizeGiB. It never shrinks:
// that would cut off a filesystem holding the user's images and volumes.
func prepareDataDisk(path string, sizeGiB int) error {
	want := int64(sizeGiB) << 30
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open data disk: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= want {
		return nil
	}
	if err := f.Truncate(want); err != nil {
		return fmt.Errorf("failed to size data disk %s to %d GiB: %w", path, sizeGiB, err)
	}
	return nil
}
