package guestagent

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// Fuzz targets for the Linux-only parsers: /proc/self/mountinfo, the data disk's ext4
// superblock (whatever the disk holds, it is the guest's), /proc/bus/input/devices and
// /proc/uptime.

func FuzzParseMountinfo(f *testing.F) {
	f.Add("22 1 0:21 / / rw,relatime - tmpfs tmpfs rw\n" +
		"36 22 254:16 / /var/lib/berth rw,noatime shared:1 master:2 - ext4 /dev/vdb rw\n" +
		`40 36 0:33 / /Users/a\040b\134c rw - virtiofs share\0400 rw` + "\n")
	f.Add("1 2 3 4 5 6 -\n1 2 3 4 5 6 7 - x\n")
	f.Add(`1 2 3 4 \1 6 - t \07`)
	f.Fuzz(func(t *testing.T, s string) {
		mounts, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		if n := strings.Count(strings.TrimRight(s, "\n"), "\n") + 1; strings.TrimSpace(s) != "" && len(mounts) != n {
			t.Fatalf("%d entries from %d lines", len(mounts), n)
		}
		for _, m := range mounts {
			if m.FSType == "" || m.MountPoint == "" {
				t.Fatalf("empty field in %+v", m)
			}
		}
		unmountOrder(mounts)
	})
}

func FuzzUnescapeMountinfo(f *testing.F) {
	f.Add(`/a\040b`)
	f.Add(`\777\400\0`)
	f.Add(`\\\\`)
	f.Fuzz(func(t *testing.T, s string) {
		u := unescapeMountinfo(s)
		if len(u) > len(s) {
			t.Fatalf("unescaping %q grew it to %q", s, u)
		}
		if !strings.Contains(s, `\`) && u != s {
			t.Fatalf("%q changed to %q", s, u)
		}
	})
}

func FuzzProbeDisk(f *testing.F) {
	sb := make([]byte, sbOffset+sbSize)
	binary.LittleEndian.PutUint16(sb[sbOffset+sbMagicOff:], sbMagic)
	binary.LittleEndian.PutUint32(sb[sbOffset+sbLogBlockOff:], 2)
	binary.LittleEndian.PutUint32(sb[sbOffset+sbBlocksLoOff:], 1<<20)
	f.Add(sb)
	big := bytes.Clone(sb)
	binary.LittleEndian.PutUint32(big[sbOffset+sbIncompatOff:], incompat64bit)
	binary.LittleEndian.PutUint32(big[sbOffset+sbBlocksHiOff:], 0xffffffff)
	binary.LittleEndian.PutUint32(big[sbOffset+sbLogBlockOff:], 0xffffffff)
	f.Add(big)
	f.Add(make([]byte, 4096))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		state, sb, err := probeDisk(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		switch state {
		case diskExt4:
			if sb.BlockSize < 1024 || sb.BlockSize > 64<<10 || sb.BlockSize&(sb.BlockSize-1) != 0 {
				t.Fatalf("block size %d", sb.BlockSize)
			}
		case diskEmpty:
			if bytes.ContainsFunc(b[:min(len(b), probeHeadLength)], func(r rune) bool { return r != 0 }) {
				t.Fatal("a disk with data counted as empty")
			}
		}
	})
}

func FuzzParseInputDevices(f *testing.F) {
	f.Add("I: Bus=0019 Vendor=0000 Product=0001 Version=0000\nN: Name=\"Power Button\"\nH: Handlers=kbd event0\nB: KEY=10000000000000 0\n\nN: Name=\"x\"\nB: KEY=zz\n", 64)
	f.Add("B: KEY=1 2 3 4 5 6 7 8 9 a b c d e f\nH: Handlers=event99", 32)
	f.Fuzz(func(t *testing.T, s string, wordBits int) {
		if wordBits != 32 {
			wordBits = 64 // the kernel's long: the only widths there are
		}
		devs, err := parseInputDevices(strings.NewReader(s), wordBits)
		if err != nil {
			return
		}
		powerKeyNodes(devs)
	})
}

func FuzzParseUptime(f *testing.F) {
	f.Add("12.34 5.67\n")
	f.Add("NaN 1")
	f.Add("-1e308")
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseUptime(s); err == nil && d < 0 {
			t.Fatalf("negative uptime %v from %q", d, s)
		}
	})
}
