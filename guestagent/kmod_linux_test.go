//go:build linux

package guestagent

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseModuleList(t *testing.T) {
	in := `# boot modules
virtio_pci
virtio-blk   # comment after a name

crc32c_generic ext4
virtio_blk
`
	got, err := parseModuleList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestNormModName(t *testing.T) {
	for in, want := range map[string]string{
		"ext4":                               "ext4",
		"crc32c-generic":                     "crc32c_generic",
		"kernel/fs/ext4/ext4.ko":             "ext4",
		"kernel/fs/ext4/ext4.ko.xz":          "ext4",
		"/lib/modules/x/kernel/a/b-c.ko.zst": "b_c",
	} {
		if got := normModName(in); got != want {
			t.Errorf("normModName(%q) = %q, want %q", in, got, want)
		}
	}
}

const testModulesDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/net/netfilter/xt_MASQUERADE.ko: kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_nat.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/block/virtio_blk.ko.xz:
`

func TestParseModulesDep(t *testing.T) {
	dep, err := parseModulesDep(strings.NewReader(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	if got := dep["ext4"]; got.path != "kernel/fs/ext4/ext4.ko" || !reflect.DeepEqual(got.deps, []string{"crc16", "mbcache", "jbd2"}) {
		t.Fatalf("ext4 entry = %+v", got)
	}
	if got := dep["virtio_blk"].path; got != "kernel/drivers/block/virtio_blk.ko.xz" {
		t.Fatalf("virtio_blk path = %q", got)
	}
	if _, err := parseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Fatal("malformed line accepted")
	}
}

func TestModuleLoaderOrder(t *testing.T) {
	dep, err := parseModulesDep(strings.NewReader(testModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	var loaded []string
	l := &moduleLoader{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		dir:     "/lib/modules/test",
		dep:     dep,
		builtin: map[string]bool{"crc32c_generic": true},
		loaded:  map[string]bool{},
		sysfs:   t.TempDir(),
		finit: func(p string) error {
			loaded = append(loaded, normModName(p))
			if !filepath.IsAbs(p) {
				t.Errorf("module path %q is not absolute", p)
			}
			return nil
		},
	}
	// A list in the wrong order still loads dependencies first, each module once;
	// built-in and missing modules are skipped.
	if err := l.loadAll([]string{"xt_MASQUERADE", "crc32c_generic", "nf_conntrack", "ext4", "nosuchmod"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"libcrc32c", "nf_conntrack", "nf_nat", "xt_MASQUERADE", "jbd2", "mbcache", "crc16", "ext4"}
	if !reflect.DeepEqual(loaded, want) {
		t.Fatalf("load order %v, want %v", loaded, want)
	}

	// One failure does not stop the others and is reported.
	loaded = nil
	l.loaded = map[string]bool{}
	l.finit = func(p string) error {
		if normModName(p) == "mbcache" {
			return errors.New("boom")
		}
		loaded = append(loaded, normModName(p))
		return nil
	}
	err = l.loadAll([]string{"ext4", "libcrc32c"})
	if err == nil || !strings.Contains(err.Error(), "mbcache") {
		t.Fatalf("err = %v, want the mbcache failure", err)
	}
	if !reflect.DeepEqual(loaded, []string{"jbd2", "libcrc32c"}) {
		t.Fatalf("loaded %v", loaded)
	}
}

func TestBuiltinFromSysfs(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "builtin_mod", "parameters"), 0o755)
	os.MkdirAll(filepath.Join(dir, "loaded_mod"), 0o755)
	os.WriteFile(filepath.Join(dir, "loaded_mod", "initstate"), []byte("live\n"), 0o644)
	l := &moduleLoader{sysfs: dir}
	if !l.isBuiltinSysfs("builtin_mod") || l.isBuiltinSysfs("loaded_mod") || l.isBuiltinSysfs("absent") {
		t.Fatal("wrong built-in detection")
	}
}

func TestParseModulesBuiltin(t *testing.T) {
	got, err := parseModulesBuiltin(strings.NewReader("kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !got["ext4"] || !got["crc32c_generic"] || len(got) != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestIsCompressedModule(t *testing.T) {
	if !isCompressedModule("a.ko.xz") || !isCompressedModule("a.ko.zst") || isCompressedModule("a.ko") {
		t.Fatal("wrong")
	}
}
