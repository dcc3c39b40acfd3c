package vm

import "context"

// Pauser is implemented by a Driver that can stop the VM's vCPUs and continue them later
// with everything else kept: memory, devices, open connections to the agent. The host
// daemon pauses an idle VM with it (idle.pauseAfter, docs/resources.md). Drivers without
// it (WSL2: Hyper-V's utility VM offers no pause to a distribution) are never paused.
type Pauser interface {
	// Pause stops the vCPUs. The guest's clocks stand still meanwhile, so the host sets the
	// guest clock after Resume. Pausing a paused VM is harmless.
	Pause(ctx context.Context) error
	// Resume continues the vCPUs; it is harmless when the VM runs.
	Resume(ctx context.Context) error
}
