package main

import (
	"os"
	"testing"
)

// TestMain lets the package's tests run berth's commands on a machine where they run as
// root (CI); TestRefuseRoot checks the refusal itself.
func TestMain(m *testing.M) {
	os.Setenv(envAllowRoot, "1")
	os.Exit(m.Run())
}

// TestRefuseRoot (RELIABILITY item 18): as root, every command that touches an instance
// is refused with what to do, unless BERTH_ALLOW_ROOT=1; version and help still answer.
func TestRefuseRoot(t *testing.T) {
	testHome(t)
	old := euid
	t.Cleanup(func() { euid = old })
	euid = func() int { return 0 }
	t.Setenv(envAllowRoot, "")
	for _, args := range [][]string{{"start"}, {"list"}, {"stop", "x"}, {"config", "set", "cpus=1"}, {"cluster", "list"}} {
		berthCLI(t, "", args...).must(t, 1, "must not run as root", envAllowRoot+"=1")
	}
	berthCLI(t, "", "version").must(t, 0)
	berthCLI(t, "", "--version").must(t, 0)
	t.Setenv(envAllowRoot, "1")
	berthCLI(t, "", "list").must(t, 0)
	euid = func() int { return 1000 }
	t.Setenv(envAllowRoot, "")
	berthCLI(t, "", "list").must(t, 0)
}
