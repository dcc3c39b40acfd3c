package daemon

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// A full host file system. The data disk is a sparse file in the state dir, so the guest
// can run out of host space long before its own disk is full. QEMU's default for
// virtio-blk (werror=enospc) then pauses the VM and keeps the failed write, which it
// retries when the VM continues, so nothing the guest wrote is lost and the guest sees
// no I/O error. berth notices the pause (vm.IOErrorWatcher), shows it (state Degraded,
// the error says which disk is full, how much is free and what to do; an event for the
// tray), watches the free space, and resumes the VM once hostDiskMargin is free.

const (
	// hostDiskMargin is the free space the host file system must have before berth resumes
	// a VM paused on it. 256 MiB: room for the write that failed and a good deal more, so
	// that the VM does not pause again at once, while still a small demand on a nearly
	// full disk (a percentage would ask for gigabytes on a large one). Resuming too early
	// is harmless: the VM pauses again and berth waits again, backing off.
	hostDiskMargin = 256 << 20
	// hostDiskPoll is how often the free space is looked at while the VM is paused.
	hostDiskPoll = 2 * time.Second
	// hostDiskResumeTimeout bounds one resume request.
	hostDiskResumeTimeout = 10 * time.Second
	// hostDiskSettle: a pause this soon after a resume means the host is still full.
	hostDiskSettle = time.Second
	// hostDiskMaxWait caps the backoff between resumes that pause again at once.
	hostDiskMaxWait = 30 * time.Second
)

// watchHostDisk follows the VM's host I/O errors until ctx ends: on a pause it shows the
// full host disk and resumes the VM once there is space again. It does nothing when drv
// cannot report such pauses (vz, WSL).
func (d *Daemon) watchHostDisk(ctx context.Context, drv vm.Driver) {
	w, ok := drv.(vm.IOErrorWatcher)
	if !ok {
		return
	}
	h := &hostDiskWatch{
		d: d, w: w, path: d.inst.Path(store.DataDisk), free: store.FreeSpace,
		poll: hostDiskPoll, margin: hostDiskMargin, settle: hostDiskSettle, maxWait: hostDiskMaxWait,
	}
	h.run(ctx)
}

// hostDiskWatch is watchHostDisk's loop; its fields are what the tests replace.
type hostDiskWatch struct {
	d       *Daemon
	w       vm.IOErrorWatcher
	path    string                           // the data disk, when the error names no image
	free    func(dir string) (uint64, error) // bytes the VM may still write there
	poll    time.Duration
	margin  uint64
	settle  time.Duration
	maxWait time.Duration
}

func (h *hostDiskWatch) run(ctx context.Context) {
	errs := h.w.IOErrors()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-errs:
			if !e.Paused {
				// The guest got the error itself (QEMU's werror=enospc reports other errors).
				h.d.log.Warn("host I/O error on a VM disk", "device", e.Device, "path", e.Path, "err", e.Message)
				continue
			}
			h.recover(ctx, errs, e)
		}
	}
}

// recover handles one pause: it shows it, waits for space and resumes the VM, until the VM
// runs again or ctx ends.
func (h *hostDiskWatch) recover(ctx context.Context, errs <-chan vm.IOError, e vm.IOError) {
	h.d.setHostDiskPaused(true)
	defer h.d.setHostDiskPaused(false)
	path := cmp.Or(e.Path, h.path)
	dir := filepath.Dir(path)
	wait := h.poll
	shown := ""
	for {
		free, ferr := h.free(dir)
		shown = h.problem(shown, e, dir, free, ferr)
		h.d.log.Warn("the VM paused on a host I/O error", "path", path, "nospace", e.NoSpace, "free", free, "err", e.Message)
		// Wait for the margin: the first look after one poll, later ones every poll, and
		// after a failed resume no sooner than wait.
		next := time.Now().Add(wait)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(h.poll):
			}
			drain(errs)
			free, ferr = h.free(dir)
			if ferr != nil {
				// Without the free space, resume on the backoff alone: at worst the VM
				// pauses again.
				h.d.log.Warn("failed to read the host's free space", "dir", dir, "err", ferr)
			} else {
				shown = h.refresh(shown, h.text(e, dir, free, nil))
			}
			if (ferr != nil || free >= h.margin) && !time.Now().Before(next) {
				break
			}
		}
		rctx, cancel := context.WithTimeout(ctx, hostDiskResumeTimeout)
		err := h.w.Resume(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.d.log.Warn("failed to resume the VM", "err", err)
			wait = min(2*wait, h.maxWait)
			continue
		}
		// The VM pausing again at once means the space went as fast as it came.
		select {
		case <-ctx.Done():
			return
		case again := <-errs:
			if again.Paused {
				h.d.log.Warn("the VM paused again right after resuming", "free", free)
				e, wait = again, min(2*wait, h.maxWait)
				continue
			}
		case <-time.After(h.settle):
		}
		h.resumed(shown, dir, free, ferr)
		return
	}
}

// text is the problem as the user reads it: which disk, how much is free, what to do.
func (h *hostDiskWatch) text(e vm.IOError, dir string, free uint64, ferr error) string {
	freeText := formatBytes(free) + " free"
	if ferr != nil {
		freeText = "free space unknown: " + ferr.Error()
	}
	if e.NoSpace {
		return fmt.Sprintf("the host disk holding %s is full (%s): the VM is paused until there is room. "+
			"Free at least %s on that disk; berth resumes the VM by itself", dir, freeText, formatBytes(h.margin))
	}
	return fmt.Sprintf("the VM is paused on a host I/O error on the disk in %s (%s; %s); berth retries by itself",
		dir, cmp.Or(e.Message, "unknown error"), freeText)
}

// problem shows a pause: state Degraded with the error (during a start or a stop only the
// error, so the start's phases and the stop keep their state), and an event. A pause
// again while the last one is still shown (shown) only updates the text. It returns the
// error shown.
func (h *hostDiskWatch) problem(shown string, e vm.IOError, dir string, free uint64, ferr error) string {
	text := h.text(e, dir, free, ferr)
	if shown != "" {
		return h.refresh(shown, text)
	}
	msg := "host disk full: the VM is paused"
	if !e.NoSpace {
		msg = "host I/O error: the VM is paused"
	}
	d := h.d
	d.mu.Lock()
	state := d.status.State
	if state == api.StateRunning || state == api.StateDegraded {
		state = api.StateDegraded
		d.status.State, d.status.Phase = state, ""
	}
	d.status.Error = text
	d.mu.Unlock()
	d.publish(api.Event{State: state, Message: msg, Error: text})
	return text
}

// refresh keeps the free space in the status current while the error is still ours,
// without an event for each change. It returns the error now shown.
func (h *hostDiskWatch) refresh(shown, text string) string {
	if shown == text {
		return shown
	}
	d := h.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Error != shown {
		return shown
	}
	d.status.Error = text
	return text
}

// resumed clears the problem if it is still the one shown. The state goes back to Running
// when the agent session lived through the pause; otherwise it stays Degraded, and the
// engine's first event on the new session makes it Running (followEngine), as after any
// lost session.
func (h *hostDiskWatch) resumed(shown, dir string, free uint64, ferr error) {
	d := h.d
	msg := fmt.Sprintf("the host disk holding %s has room again (%s free): the VM resumed", dir, formatBytes(free))
	if ferr != nil {
		msg = "the VM resumed"
	}
	d.mu.Lock()
	d.hostDiskPaused = false // before the event: a stop that follows it is taken
	if d.status.Error != shown {
		// Someone else's state (a stop, the VM's end) replaced ours.
		d.mu.Unlock()
		d.log.Info(msg)
		return
	}
	d.status.Error = ""
	state := d.status.State
	if state == api.StateDegraded {
		if d.agent != nil && !d.agent.closed() {
			state = api.StateRunning
		} else {
			msg += "; reconnecting to the guest agent"
		}
		d.status.State = state
	}
	d.mu.Unlock()
	d.log.Info(msg, "state", state)
	d.publish(api.Event{State: state, Message: msg})
}

// drain drops the errors already queued: a pause brings one per failed request.
func drain(errs <-chan vm.IOError) {
	for {
		select {
		case <-errs:
		default:
			return
		}
	}
}

// formatBytes is n in MiB below 10 GiB, else in GiB.
func formatBytes(n uint64) string {
	if n < 10<<30 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

func (d *Daemon) setHostDiskPaused(paused bool) {
	d.mu.Lock()
	d.hostDiskPaused = paused
	d.mu.Unlock()
}

// stopBlockedByHostDisk is why a graceful stop cannot be done now, nil when it can: a VM
// paused on a full host disk cannot write what its shutdown writes (the engine's state,
// the file systems' last changes), so a stop would wait out every graceful step and then
// kill it anyway, losing those writes. The user frees space (berth resumes the VM) or
// chooses the forced stop.
func (d *Daemon) stopBlockedByHostDisk() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hostDiskPaused {
		return nil
	}
	return fmt.Errorf("instance %q cannot stop cleanly now: %s.\n"+
		"Stop it once it runs again, or at once, losing the writes the VM could not finish: berth stop --force %s",
		d.inst.Name, strings.TrimSuffix(d.status.Error, "."), d.inst.Name)
}
