package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ManifestFile is the install record in the berth root: ~/.berth/install.json.
const ManifestFile = "install.json"

// Item kinds in the manifest.
const (
	KindDir           = "dir"           // a directory install created; removed when empty
	KindFile          = "file"          // a file install wrote
	KindImage         = "image"         // a guest image directory (removed whole)
	KindSymlink       = "symlink"       // a link; removed only while it still points at Target
	KindDockerContext = "dockerContext" // a docker CLI context (Name)
	KindLoginItem     = "loginItem"     // start-at-login: a unit/plist file, or a registry value
	KindRegistry      = "registryValue" // Windows: value Name under key Path (HKCU)
	KindUserPath      = "userPath"      // Windows: Path appended to HKCU\Environment\Path
)

// Manifest is install.json: everything install added, for uninstall to remove.
type Manifest struct {
	Format int    `json:"format"` // 1
	Berth  string `json:"berth"`  // version that last changed the install
	Prefix string `json:"prefix"`
	Items  []Item `json:"items"`
}

// Item is one installed thing.
type Item struct {
	Kind   string `json:"kind"`
	Path   string `json:"path,omitempty"`
	Name   string `json:"name,omitempty"`
	Target string `json:"target,omitempty"`
	// Source says where an image came from (a directory, or a bundle URL with its sha256).
	Source string `json:"source,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

func (i Item) key() string { return i.Kind + "\x00" + i.Path + "\x00" + i.Name }

// LoadManifest reads the manifest; a missing one is (nil, nil).
func LoadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("the install record %s is corrupt: %w", path, err)
	}
	if m.Format != 1 {
		return nil, fmt.Errorf("the install record %s has format %d; this berth reads format 1", path, m.Format)
	}
	return &m, nil
}

// add records it (replacing an item with the same kind, path and name) and reports whether
// the manifest changed.
func (m *Manifest) add(it Item) bool {
	for i, old := range m.Items {
		if old.key() == it.key() {
			if old == it {
				return false
			}
			m.Items[i] = it
			return true
		}
	}
	m.Items = append(m.Items, it)
	return true
}

// find returns the recorded item with it's kind, path and name.
func (m *Manifest) find(kind, path, name string) (Item, bool) {
	k := Item{Kind: kind, Path: path, Name: name}.key()
	for _, it := range m.Items {
		if it.key() == k {
			return it, true
		}
	}
	return Item{}, false
}

func (m *Manifest) marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}
