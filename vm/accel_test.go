package vm

import "testing"

func TestChooseAccel(t *testing.T) {
	withVMX := "processor: 0\nflags\t\t: fpu vme vmx sse\n"
	noVMX := "processor: 0\nflags\t\t: fpu vme sse hypervisor\n"
	tests := []struct {
		name    string
		host    Host
		guest   string
		forced  string
		want    string
		wantErr bool
	}{
		{name: "linux kvm usable", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: withVMX, KVMUsable: true}, guest: "amd64", want: "kvm"},
		{name: "nested guest without vmx", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: noVMX, KVMUsable: true}, guest: "amd64", want: "tcg"},
		{name: "no /dev/kvm", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: withVMX}, guest: "amd64", want: "tcg"},
		{name: "foreign arch", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: withVMX, KVMUsable: true}, guest: "arm64", want: "tcg"},
		{name: "arm64 linux kvm", host: Host{GOOS: "linux", GOARCH: "arm64", KVMUsable: true}, guest: "arm64", want: "kvm"},
		{name: "macos", host: Host{GOOS: "darwin", GOARCH: "arm64"}, guest: "arm64", want: "hvf"},
		{name: "macos intel arm guest", host: Host{GOOS: "darwin", GOARCH: "amd64"}, guest: "arm64", want: "tcg"},
		{name: "whpx is not QEMU's", host: Host{GOOS: "windows", GOARCH: "amd64"}, guest: "amd64", forced: "whpx", wantErr: true},
		{name: "forced tcg", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: withVMX, KVMUsable: true}, guest: "amd64", forced: "tcg", want: "tcg"},
		{name: "forced kvm unusable", host: Host{GOOS: "linux", GOARCH: "amd64"}, guest: "amd64", forced: "kvm", wantErr: true},
		{name: "forced kvm without flags is honoured", host: Host{GOOS: "linux", GOARCH: "amd64", CPUInfo: noVMX, KVMUsable: true}, guest: "amd64", forced: "kvm", want: "kvm"},
		{name: "forced hvf on linux", host: Host{GOOS: "linux", GOARCH: "amd64"}, guest: "amd64", forced: "hvf", wantErr: true},
		{name: "unknown", host: Host{GOOS: "linux", GOARCH: "amd64"}, guest: "amd64", forced: "xen", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseAccel(tt.host, tt.guest, tt.forced)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
