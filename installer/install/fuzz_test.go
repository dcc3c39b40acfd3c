package install

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadManifest: install.json is read back by uninstall, and an older or newer berth
// (or a hand edit) may have written it. It either loads as format 1 or is refused.
func FuzzLoadManifest(f *testing.F) {
	f.Add([]byte(`{"format":1,"berth":"v1","prefix":"/home/u/.local","items":[{"kind":"file","path":"/home/u/.local/bin/berth"},{"kind":"symlink","path":"/a","target":"/b"},{"kind":"dockerContext","name":"berth"}]}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"items":null}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), ManifestFile)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := LoadManifest(path)
		if err != nil {
			return
		}
		if m == nil || m.Format != 1 {
			t.Fatalf("loaded %+v without an error", m)
		}
		for _, it := range m.Items {
			m.add(it)
		}
	})
}
