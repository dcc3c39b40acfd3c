package install

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/store"
)

func keys(m map[string]string) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

// TestUninstallDataRefusesForeignRoot: BERTH_HOME pointed at a directory holding other
// data (here HOME itself) is never deleted wholesale: without berth's marker and with
// things berth did not create, uninstall --data refuses and changes nothing.
func TestUninstallDataRefusesForeignRoot(t *testing.T) {
	home := testHome(t)
	t.Setenv("BERTH_HOME", home)
	os.MkdirAll(filepath.Join(home, "Documents"), 0o755)
	os.WriteFile(filepath.Join(home, "Documents", "thesis.tex"), []byte("years of work"), 0o644)
	os.MkdirAll(filepath.Join(home, "projects"), 0o755) // a valid instance name, but not one
	os.WriteFile(filepath.Join(home, "projects", "main.go"), []byte("package main"), 0o644)
	os.WriteFile(filepath.Join(home, ".bashrc"), []byte("alias x=y"), 0o644)
	// An instance berth made there.
	os.MkdirAll(filepath.Join(home, "dev"), 0o700)
	os.WriteFile(filepath.Join(home, "dev", "berth.yaml"), nil, 0o600)
	os.WriteFile(filepath.Join(home, "dev", "data.img"), []byte("volumes"), 0o600)
	before := snapshot(t, home)

	var out bytes.Buffer
	_, err := Uninstall(t.Context(), UninstallOptions{Data: true, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "refusing to delete data in "+home) || !strings.Contains(err.Error(), store.HomeMarker) {
		t.Fatalf("err = %v, want a refusal naming the root and the marker\n%s", err, out.String())
	}
	for _, p := range []string{"Documents", "projects", ".bashrc"} {
		if !strings.Contains(err.Error(), filepath.Join(home, p)) {
			t.Errorf("refusal does not name %s: %v", p, err)
		}
	}
	if d := diffSnapshots(before, snapshot(t, home)); d != "" {
		t.Fatalf("a refused uninstall --data changed the directory:\n%s", d)
	}
}

// TestUninstallDataKeepsOthersFiles: in a root berth created (it has the marker),
// uninstall --data deletes berth's instances, images and files and keeps, by name,
// whatever else was put there.
func TestUninstallDataKeepsOthersFiles(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	if _, err := Install(t.Context(), Options{Exe: exe, ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(home, ".berth")
	if !store.HasMarker(root) {
		t.Fatalf("install created %s without %s", root, store.HomeMarker)
	}
	inst, err := store.Create("dev", store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(inst.Path(store.DataDisk), []byte("volumes"), 0o600)
	os.MkdirAll(inst.Path(store.RuntimeDir), 0o700)
	os.WriteFile(inst.Path(store.HostdLog), []byte("log"), 0o600)
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("mine"), 0o644)
	os.WriteFile(inst.Path("backup.tar"), []byte("mine too"), 0o644)

	var out bytes.Buffer
	if _, err := Uninstall(t.Context(), UninstallOptions{Data: true, Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := keys(snapshot(t, home))
	want := []string{".", ".berth", ".berth/" + store.HomeMarker, ".berth/dev", ".berth/dev/backup.tar", ".berth/notes.txt"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after uninstall --data: %v, want %v\n%s", got, want, out.String())
	}
	for _, w := range []string{"kept       ~/.berth/notes.txt (not berth's)", "kept       ~/.berth (it holds files berth did not create)", "kept ~/.berth/dev for what berth did not put there"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}

	// Once the user's files are gone, a second run removes the rest.
	os.Remove(filepath.Join(root, "notes.txt"))
	os.Remove(inst.Path("backup.tar"))
	os.Remove(inst.Dir)
	if _, err := Uninstall(t.Context(), UninstallOptions{Data: true}); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, home); len(got) != 1 {
		t.Fatalf("HOME after the second uninstall --data: %v", keys(got))
	}
}

// TestUninstallDataOldRootWithOnlyBerthsFiles: a root from before the marker is berth's
// when it holds only what berth creates; uninstall --data deletes it.
func TestUninstallDataOldRootWithOnlyBerthsFiles(t *testing.T) {
	home := testHome(t)
	root := filepath.Join(home, ".berth")
	for p, data := range map[string]string{
		"_images/amd64/vmlinuz": "k", "_images/amd64/root.img": "r", "_images/amd64.part": "x",
		"tray.json": "{}", "install.json": `{"format":1}`, ".install.json.tmp123": "",
		"default/berth.yaml": "", "default/data.img": "v", "default/state.json": "{}", "default/run/qmp.sock": "",
		"old/data.img": "v",
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o700)
		os.WriteFile(filepath.Join(root, p), []byte(data), 0o600)
	}
	var out bytes.Buffer
	if _, err := Uninstall(t.Context(), UninstallOptions{Data: true, Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if got := snapshot(t, home); len(got) != 1 {
		t.Fatalf("left: %v\n%s", keys(got), out.String())
	}
}
