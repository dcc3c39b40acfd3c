//go:build linux

package guestagent

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseUptime(t *testing.T) {
	got, err := parseUptime("12.34 56.78\n")
	if err != nil || got != 12340*time.Millisecond {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "abc 1"} {
		if _, err := parseUptime(bad); err == nil {
			t.Errorf("parseUptime(%q) accepted", bad)
		}
	}
}

func TestPickDisks(t *testing.T) {
	tests := []struct {
		name       string
		devs       []blockDev
		root, data string
		wantErr    bool
	}{
		{"serials", []blockDev{{"vda", DataDiskSerial}, {"vdb", RootDiskSerial}}, "vdb", "vda", false},
		{"serials with extra disk", []blockDev{{"vda", "other"}, {"vdb", RootDiskSerial}, {"vdc", DataDiskSerial}}, "vdb", "vdc", false},
		{"root only so far", []blockDev{{"vda", RootDiskSerial}}, "vda", "", false},
		{"no serials: by order", []blockDev{{"vda", ""}, {"vdb", ""}}, "vda", "vdb", false},
		{"no serials: one disk", []blockDev{{"vda", ""}}, "vda", "", false},
		{"nothing yet", nil, "", "", false},
		{"foreign serials only", []blockDev{{"vda", "foo"}, {"vdb", "bar"}}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, data, err := pickDisks(tt.devs)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if root != tt.root || data != tt.data {
				t.Fatalf("got root=%q data=%q, want %q %q", root, data, tt.root, tt.data)
			}
		})
	}
}

func TestListVirtioDisks(t *testing.T) {
	sys := t.TempDir()
	for name, serial := range map[string]string{"vdb": "berth-data\n", "vdaa": "", "vda": "berth-root", "sda": "x", "loop0": ""} {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		if name != "vdaa" {
			os.WriteFile(filepath.Join(sys, name, "serial"), []byte(serial), 0o644)
		}
	}
	devs, err := listVirtioDisks(sys)
	if err != nil {
		t.Fatal(err)
	}
	want := []blockDev{{"vda", "berth-root"}, {"vdb", "berth-data"}, {"vdaa", ""}}
	if len(devs) != len(want) {
		t.Fatalf("got %v", devs)
	}
	for i := range want {
		if devs[i] != want[i] {
			t.Fatalf("got %v, want %v", devs, want)
		}
	}
}

// superblock builds a 1024-byte ext4 superblock.
func superblock(logBlock, blocksLo, blocksHi uint32, is64 bool) []byte {
	b := make([]byte, sbSize)
	binary.LittleEndian.PutUint16(b[sbMagicOff:], sbMagic)
	binary.LittleEndian.PutUint32(b[sbLogBlockOff:], logBlock)
	binary.LittleEndian.PutUint32(b[sbBlocksLoOff:], blocksLo)
	binary.LittleEndian.PutUint32(b[sbBlocksHiOff:], blocksHi)
	if is64 {
		binary.LittleEndian.PutUint32(b[sbIncompatOff:], incompat64bit)
	}
	return b
}

func TestParseExt4Super(t *testing.T) {
	sb, ok := parseExt4Super(superblock(2, 262144, 7, false))
	if !ok || sb.BlockSize != 4096 || sb.BlocksCount != 262144 || sb.Size() != 1<<30 {
		t.Fatalf("got %+v %v", sb, ok)
	}
	sb, ok = parseExt4Super(superblock(2, 0, 1, true))
	if !ok || sb.BlocksCount != 1<<32 {
		t.Fatalf("64bit: got %+v %v", sb, ok)
	}
	if _, ok := parseExt4Super(make([]byte, sbSize)); ok {
		t.Fatal("zero superblock accepted")
	}
	if _, ok := parseExt4Super(superblock(9, 1, 0, false)); ok {
		t.Fatal("absurd block size accepted")
	}
}

func writeDisk(t *testing.T, size int64, at int64, data []byte) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if data != nil {
		if _, err := f.WriteAt(data, at); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func TestProbeDisk(t *testing.T) {
	tests := []struct {
		name string
		size int64
		at   int64
		data []byte
		want diskState
	}{
		{"new sparse disk", 64 << 20, 0, nil, diskEmpty},
		{"tiny empty disk", 512, 0, nil, diskEmpty},
		{"ext4", 64 << 20, sbOffset, superblock(2, 16384, 0, false), diskExt4},
		{"magic only at 1080", 64 << 20, 1080, []byte{0x53, 0xEF}, diskExt4},
		{"damaged superblock, data behind it", 64 << 20, 512 << 10, []byte("precious"), diskUnknown},
		{"partition table", 64 << 20, 510, []byte{0x55, 0xAA}, diskUnknown},
		{"data past the first MiB only", 64 << 20, 2 << 20, []byte("x"), diskEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := probeDisk(writeDisk(t, tt.size, tt.at, tt.data))
			if err != nil || got != tt.want {
				t.Fatalf("probeDisk = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestProbeRealExt4 checks the superblock reader against what mkfs.ext4 writes, when the
// tool is installed.
func TestProbeRealExt4(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	f := writeDisk(t, 64<<20, 0, nil)
	if out, err := exec.Command(mkfs, "-q", "-F", f.Name()).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	state, sb, err := probeDisk(f)
	if err != nil || state != diskExt4 {
		t.Fatalf("probeDisk = %v, %v", state, err)
	}
	if sb.Size() > 64<<20 || sb.Size() < 60<<20 {
		t.Fatalf("file system size %d for a 64 MiB disk", sb.Size())
	}
}

func TestRemoveSameDev(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "init"), []byte("x"), 0o755)
	os.Symlink("/nowhere", filepath.Join(dir, "link"))
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// Another device number removes nothing.
	if n := removeSameDev(dir, st.Dev+1); n != 0 {
		t.Fatalf("removed %d entries of another device", n)
	}
	if n := removeSameDev(dir, st.Dev); n != 5 {
		t.Fatalf("removed %d entries, want 5", n)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}
