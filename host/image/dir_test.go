package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/store"
)

// TestDirOrder: the config's images dir, then BERTH_IMAGES, then the per-user directory;
// Find names what is missing and how to install an image.
func TestDirOrder(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BERTH_HOME", home)
	t.Setenv("BERTH_IMAGES", "")
	cfg := store.Config{Arch: "amd64"}
	if dir, chosen, err := Dir(cfg); err != nil || chosen || dir != filepath.Join(home, store.ImagesDir, "amd64") {
		t.Errorf("default: %q %v %v", dir, chosen, err)
	}
	t.Setenv("BERTH_IMAGES", "/env/images")
	if dir, chosen, _ := Dir(cfg); !chosen || dir != "/env/images/amd64" {
		t.Errorf("BERTH_IMAGES: %q %v", dir, chosen)
	}
	cfg.Images = "/cfg/images"
	if dir, chosen, _ := Dir(cfg); !chosen || dir != "/cfg/images/amd64" {
		t.Errorf("config: %q %v", dir, chosen)
	}

	cfg.Images = t.TempDir()
	_, err := Find(cfg)
	if err == nil || !strings.Contains(err.Error(), "berth install --image-url") {
		t.Fatalf("Find of an empty dir: %v", err)
	}
	dir := filepath.Join(cfg.Images, "amd64")
	os.MkdirAll(dir, 0o755)
	for _, f := range Required {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	img, err := Find(cfg)
	if err != nil || img.Kernel != filepath.Join(dir, Kernel) || img.Dir != dir {
		t.Errorf("Find = %+v, %v", img, err)
	}
}
