package qemu

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/vm"
)

var _ vm.Pauser = (*Driver)(nil)

// Pause stops the vCPUs (QMP stop) over the events monitor; QEMU's own threads, the
// devices and the sockets to the host stay up. Resume (driver.go) sends cont.
func (d *Driver) Pause(ctx context.Context) error { return d.qmp.Pause(ctx) }

// Pause sends `stop`.
func (m *qmpMonitor) Pause(ctx context.Context) error {
	qc, err := m.connection(ctx)
	if err != nil {
		return err
	}
	if _, err := qc.execute(ctx, "stop"); err != nil {
		return fmt.Errorf("QMP stop: %w", err)
	}
	return nil
}
