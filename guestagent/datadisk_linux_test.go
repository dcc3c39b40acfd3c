//go:build linux

package guestagent

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

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
