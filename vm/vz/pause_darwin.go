//go:build darwin && cgo

package vz

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/vm"
)

var _ vm.Pauser = (*Driver)(nil)

// Pause stops the VM's vCPUs (VZVirtualMachine pauseWithCompletionHandler). Virtualization
// framework keeps the guest's memory resident while paused; what a pause saves is CPU and
// the host's timer wake-ups, not memory (docs/resources.md).
func (d *Driver) Pause(ctx context.Context) error {
	machine, _, err := d.running()
	if err != nil {
		return err
	}
	if !machine.CanPause() {
		if machine.CanResume() {
			return nil // already paused
		}
		return fmt.Errorf("vz: the VM cannot pause in state %v", machine.State())
	}
	return vzCall(ctx, "pause", machine.Pause)
}

// Resume continues a paused VM (resumeWithCompletionHandler); a running VM is left alone.
func (d *Driver) Resume(ctx context.Context) error {
	machine, _, err := d.running()
	if err != nil {
		return err
	}
	if !machine.CanResume() {
		return nil
	}
	return vzCall(ctx, "resume", machine.Resume)
}

// vzCall runs a blocking vz call and returns its error, or ctx's when that ends first. The
// call's goroutine ends when Virtualization.framework runs its completion handler.
func vzCall(ctx context.Context, what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("vz: %s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vz: %s: %w", what, ctx.Err())
	}
}
