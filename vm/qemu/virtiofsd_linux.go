package qemu

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/fileshare/guard"
)

// virtiofsdPath is Debian's virtiofsd (shipped with qemu-system-common).
const virtiofsdPath = "/usr/lib/qemu/virtiofsd"

// hasVirtiofsd reports whether virtiofsd can be used: it is installed and we are root (it
// sandboxes itself with namespaces and needs CAP_SYS_ADMIN).
func hasVirtiofsd() bool {
	if os.Geteuid() != 0 {
		return false
	}
	_, err := os.Stat(virtiofsdPath)
	return err == nil
}

// startVirtiofsd serves dir on the vhost-user socket sock until QEMU disconnects (then it
// exits by itself) or the daemon dies (PDEATHSIG). It returns once the socket exists.
// virtiofsd pivots into dir inside its own mount namespace, so no symlink in the share can
// lead it to a host path outside dir.
func startVirtiofsd(ctx context.Context, dir, sock string, log *slog.Logger) (*exec.Cmd, error) {
	os.Remove(sock)
	// fuse option values escape commas and backslashes with a backslash.
	src := strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(dir)
	// The share guard's filter makes virtiofsd's per-request switches to the guest's uid
	// no-ops and refuses setuid/setgid modes, device nodes, fifos and xattrs, so what the
	// guest creates belongs to the user running berth and carries no privilege.
	cmd, err := guard.Command(guard.ProfileVirtiofsd, []string{virtiofsdPath, "--socket-path=" + sock, "-o", "source=" + src, "-o", "cache=auto", "-o", "log_level=warn", "--rlimit-nofile=0"})
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	started := make(chan error, 1)
	go func() {
		// PDEATHSIG follows the forking thread: keep it alive as long as virtiofsd.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		log.Info("virtiofsd exited", "dir", dir, "err", err, "stderr", strings.TrimSpace(stderr.String()))
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("failed to start virtiofsd for %q: %w", dir, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return cmd, nil
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) || ctx.Err() != nil {
			cmd.Process.Kill()
			return nil, fmt.Errorf("virtiofsd for %q did not create its socket: %s", dir, strings.TrimSpace(stderr.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
