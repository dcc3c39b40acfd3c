package doctor

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/store"
)

// A stopped instance: the host checks run, the guest ones are skipped with the fix to
// start it, and the report fails on the daemon.
func TestStoppedInstance(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BERTH_HOME", filepath.Join(home, "berth"))
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, "docker"))
	t.Setenv("BERTH_IMAGES", filepath.Join(home, "no-images"))
	inst, err := store.Create("dev", store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(t.Context(), inst, Options{
		MinFreeBytes: 1 << 62, // no file system has that much: the space check fails
		LookPath:     func(string) (string, error) { return "", errors.New("not found") },
	})
	if rep.OK {
		t.Fatal("report is OK for a stopped instance")
	}
	byName := map[string]Check{}
	for _, c := range rep.Checks {
		byName[c.Name] = c
		if c.Status != Pass && c.Status != Skip && c.Fix == "" && c.Name != "hypervisor" {
			t.Errorf("check %s (%s) names no fix", c.Name, c.Status)
		}
	}
	want := map[string]string{
		"config": Pass, "daemon": Fail, "image": Fail, "disk space": Fail, "docker CLI": Fail,
		"docker socket": Skip, "ports": Skip, "guest DNS": Skip, "shares": Skip,
	}
	for name, status := range want {
		if byName[name].Status != status {
			t.Errorf("check %s: %+v, want %s", name, byName[name], status)
		}
	}
	if !strings.Contains(byName["daemon"].Fix, "berth start dev") {
		t.Errorf("daemon fix %q", byName["daemon"].Fix)
	}
	if !strings.Contains(byName["disk space"].Fix, "BERTH_HOME") {
		t.Errorf("disk fix %q", byName["disk space"].Fix)
	}
	if !strings.Contains(byName["image"].Fix, "berth install") {
		t.Errorf("image fix %q", byName["image"].Fix)
	}
}
