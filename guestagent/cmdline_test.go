package guestagent

import (
	"reflect"
	"testing"
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
