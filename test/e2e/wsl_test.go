//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWSLRootfs builds the tarball the Windows driver imports and checks it carries the
// engine, the agent where the driver starts it, and a WSL configuration.
func TestWSLRootfs(t *testing.T) {
	img := filepath.Join(os.Getenv("BERTH_IMAGES"), "amd64")
	agent := filepath.Join(filepath.Dir(berthBin(t)), "linux_amd64", "berth-agent")
	out := filepath.Join(t.TempDir(), "rootfs.tar")
	if b, err := exec.Command("../../installer/image/wsl-rootfs.sh", "--image", img, "--agent", agent, "--out", out).CombinedOutput(); err != nil {
		t.Fatalf("wsl-rootfs.sh: %v\n%s", err, b)
	}
	list, err := exec.Command("tar", "-tvf", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/local/bin/berth-agent", "./usr/sbin/dockerd", "./usr/bin/containerd", "./etc/wsl.conf", "./bin -> usr/bin"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("rootfs.tar lacks %s", want)
		}
	}
	for _, line := range strings.Split(string(list), "\n") {
		if strings.HasSuffix(line, " ./tmp/") && !strings.HasPrefix(line, "drwxrwxrwt") {
			t.Errorf("/tmp is not sticky: %s", line)
		}
	}
}
