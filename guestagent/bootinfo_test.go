package guestagent

import (
	"path/filepath"
	"testing"
	"time"
)

func TestBootInfoRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "berth", "boot.json")
	in := &BootInfo{KernelBoot: 1234 * time.Millisecond, BootDone: 3 * time.Second, IP: "192.168.127.2",
		DataDevice: "/dev/vdb", RootDevice: "/dev/vda", Formatted: true, Resized: true}
	if err := writeBootInfo(p, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadBootInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if *out != *in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	if _, err := ReadBootInfo(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file read without error")
	}
}
