package guestagent

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 panic=-1 berth.bare=1 berth.debug quiet x="a b" berth.time=1700000000 berth.bare=0` + "\n")
	want := Cmdline{"BOOT_IMAGE": "/vmlinuz", "console": "ttyS0", "panic": "-1", "berth.bare": "0",
		"berth.debug": "", "quiet": "", "x": "a b", "berth.time": "1700000000"}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %#v\nwant %#v", c, want)
	}
	tests := []struct {
		name, cmdline string
		want          bool
	}{
		{"bare word", "berth.debug", true},
		{"one", "berth.debug=1", true},
		{"yes", "berth.debug=Yes", true},
		{"zero", "berth.debug=0", false},
		{"off", "berth.debug=off", false},
		{"absent", "console=ttyS0", false},
		{"prefix only", "berth.debugger=1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCmdline(tt.cmdline).Flag(CmdlineDebug); got != tt.want {
				t.Fatalf("Flag = %v, want %v", got, tt.want)
			}
		})
	}
}

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
