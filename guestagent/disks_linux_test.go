//go:build linux

package guestagent

import (
	"os"
	"path/filepath"
	"testing"
)

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
