//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRefuseRoot (RELIABILITY item 18): the real binary, run as root without
// BERTH_ALLOW_ROOT, refuses and says what to do; `berth version` still answers.
func TestRefuseRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_ALLOW_ROOT=") {
			env = append(env, kv)
		}
	}
	env = append(env, "BERTH_HOME="+t.TempDir())
	run := func(args ...string) (string, int) {
		cmd := exec.Command(berthBin(t), args...)
		cmd.Env = env
		out, _ := cmd.CombinedOutput()
		t.Logf("$ berth %s → %d\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out)
		return string(out), cmd.ProcessState.ExitCode()
	}
	if out, code := run("start"); code != 1 || !strings.Contains(out, "must not run as root") || !strings.Contains(out, "BERTH_ALLOW_ROOT=1") {
		t.Errorf("berth start as root: exit %d, %q", code, out)
	}
	if _, code := run("version"); code != 0 {
		t.Errorf("berth version as root: exit %d", code)
	}
}
