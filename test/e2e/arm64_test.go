//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/api"
)

// TestArm64Guest boots the arm64 image — the one Apple Silicon Macs run through
// Virtualization.framework — under QEMU's aarch64 emulation until the agent answers and the
// engine runs a container.
func TestArm64Guest(t *testing.T) {
	if runtime.GOARCH == "arm64" {
		t.Skip("the host is arm64: TestLifecycle already covers this image")
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Fatalf("qemu-system-aarch64 is needed for the arm64 image test (apt-get install qemu-system-arm): %v", err)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("BERTH_IMAGES"), "arm64", "vmlinuz")); err != nil {
		t.Fatalf("no arm64 image: build it with `make image`: %v", err)
	}
	e := newEnv(t)
	e.mustBerth("start", "arm", "--arch", "arm64")
	st := e.status("arm")
	if st.State != api.StateRunning || st.Guest == nil || st.Guest.Arch != "arm64" {
		t.Fatalf("status %+v", st)
	}
	t.Logf("arm64 phases: %+v", st.Phases)

	// No registry and no arm64 busybox on the host: build the image inside the guest from
	// its own busybox, with the guest's docker CLI.
	e.mustBerth("shell", "arm", "--", "sh", "-c",
		"mkdir -p /tmp/r/bin && cp /usr/bin/busybox /tmp/r/bin/ && ln -s busybox /tmp/r/bin/sh && ln -s busybox /tmp/r/bin/uname && tar -C /tmp/r -c . | docker import - arm-busybox")
	cmd := exec.Command("docker", "--context", "berth-arm", "run", "--rm", "arm-busybox", "uname", "-m")
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "aarch64" {
		t.Fatalf("docker run in the arm64 guest: %v: %s", err, out)
	}
	e.mustBerth("stop", "arm")
	e.assertNothingRunning(t, "arm")
}
