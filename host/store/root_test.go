package store

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRootMarker: berth marks the root it creates (so uninstall --data can tell it from a
// directory BERTH_HOME merely points at), and never marks one that already existed.
func TestRootMarker(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "berth")
	t.Setenv("BERTH_HOME", root)
	if _, err := Create("dev", DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, HomeMarker))
	if err != nil {
		t.Fatalf("no marker in a root berth created: %v", err)
	}
	var m RootMarker
	if err := json.Unmarshal(b, &m); err != nil || m.CreatedBy == "" || m.Created.IsZero() {
		t.Fatalf("marker %s: %+v %v", b, m, err)
	}
	if st, _ := os.Stat(root); st.Mode().Perm() != 0o700 {
		t.Errorf("root mode %v", st.Mode().Perm())
	}

	existing := t.TempDir() // like BERTH_HOME=$HOME
	t.Setenv("BERTH_HOME", existing)
	if _, err := Create("dev", DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if HasMarker(existing) {
		t.Fatal("a directory berth did not create was marked as berth's")
	}
}
