package qemu

import (
	"errors"
	"strings"
	"testing"

	"github.com/berth-dev/berth/vm"
)

func baseConfig(arch string) vm.Config {
	return vm.Config{
		Name: "default", Arch: arch, CPUs: 2, MemoryMiB: 2048,
		Kernel: "/img/vmlinuz", Initrd: "/img/initrd.img", CmdLine: "quiet",
		Disks: []vm.Disk{
			{Path: "/img/root.img", ReadOnly: true, ID: "berth-root"},
			{Path: "/home/u/.berth/default/data,1.img", ID: "berth-data"},
		},
		NICs:       []vm.NIC{{MAC: "5a:94:ef:e4:0c:ee"}},
		Agent:      vm.AgentChannel{SerialName: "io.berth.agent", VsockPort: 1024},
		ConsoleLog: "/home/u/.berth/default/console.log",
		RuntimeDir: "/home/u/.berth/default/run",
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func() vm.Config
		accel   string
		want    []string // substrings of the joined command line
		notWant []string // and substrings it must not hold
		wantErr error
	}{
		{name: "amd64 tcg", cfg: func() vm.Config { return baseConfig("amd64") }, accel: "tcg", want: []string{
			"-machine q35", "-accel tcg,thread=single -cpu max", "-smp 2", "-m 2048",
			"-append console=ttyS0 quiet mitigations=off",
			"-drive if=none,id=disk0,format=raw,file=/img/root.img,readonly=on -device virtio-blk-pci,drive=disk0,serial=berth-root",
			"file=/home/u/.berth/default/data,,1.img,discard=unmap",
			"-netdev dgram,id=net0,local.type=fd,local.str=3 -device virtio-net-pci,netdev=net0,romfile=,mac=5a:94:ef:e4:0c:ee",
			"socket,id=agent,path=/home/u/.berth/default/run/agent.sock,server=on,wait=off",
			"virtserialport,chardev=agent,name=io.berth.agent",
			"-chardev socket,id=qmp,path=/home/u/.berth/default/run/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control",
			"-chardev socket,id=qmpev,path=/home/u/.berth/default/run/qmp-events.sock,server=on,wait=off -mon chardev=qmpev,mode=control",
			"-no-reboot",
		}},
		{name: "arm64", cfg: func() vm.Config { return baseConfig("arm64") }, accel: "tcg", want: []string{"-machine virt", "console=ttyAMA0", "-cpu max,pauth-impdef=on"}},
		{name: "kvm", cfg: func() vm.Config { return baseConfig("amd64") }, accel: "kvm", want: []string{"-accel kvm -cpu host"}, notWant: []string{"mitigations"}},
		{name: "share", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.Shares = []vm.Share{{Tag: "home", HostPath: "/home/u", ReadOnly: true}}
			return c
		}, accel: "tcg", want: []string{"-fsdev local,id=fs0,path=/home/u,security_model=none,readonly=on", "mount_tag=home"}},
		{name: "virtiofs", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.RuntimeDir = "/r"
			c.Shares = []vm.Share{{Tag: "berth0", HostPath: "/home/u", Device: vm.ShareVirtiofs}}
			return c
		}, accel: "tcg", want: []string{"memory-backend-memfd,id=mem,size=2048M,share=on", "-machine q35,memory-backend=mem",
			"-chardev socket,id=vfs0,path=/r/vfs0.sock -device vhost-user-fs-pci,chardev=vfs0,tag=berth0"}},
		{name: "two nics", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.NICs = append(c.NICs, vm.NIC{MAC: "5a:94:ef:77:01:01"})
			return c
		}, accel: "tcg", want: []string{
			"-netdev dgram,id=net0,local.type=fd,local.str=3 -device virtio-net-pci,netdev=net0,romfile=,mac=5a:94:ef:e4:0c:ee",
			"-netdev dgram,id=net1,local.type=fd,local.str=4 -device virtio-net-pci,netdev=net1,romfile=,mac=5a:94:ef:77:01:01"}},
		{name: "vsock only", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.Agent.SerialName = ""
			return c
		}, accel: "tcg", wantErr: vm.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := Args(tt.cfg(), tt.accel)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := strings.Join(args, " ")
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("command line lacks %q:\n%s", w, line)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(line, w) {
					t.Errorf("command line holds %q:\n%s", w, line)
				}
			}
		})
	}
}

// parseQemuOpts splits an option list as QEMU's QemuOpts parser does: elements are
// separated by a single ',', ",," is a literal comma, and each element is key=value split at
// its first '=' (an element without '=' is a flag or the implied first value, key "").
func parseQemuOpts(t *testing.T, s string) map[string]string {
	t.Helper()
	opts := map[string]string{}
	for s != "" {
		var elem strings.Builder
		i := 0
		for ; i < len(s); i++ {
			if s[i] == ',' {
				if i+1 < len(s) && s[i+1] == ',' {
					elem.WriteByte(',')
					i++
					continue
				}
				break
			}
			elem.WriteByte(s[i])
		}
		if i < len(s) {
			i++ // the separator
		}
		s = s[i:]
		k, v, ok := strings.Cut(elem.String(), "=")
		if !ok {
			k, v = "", k
		}
		if _, dup := opts[k]; dup {
			t.Fatalf("option %q appears twice (a value was split): %v", k, opts)
		}
		opts[k] = v
	}
	return opts
}

// TestArgsEscapePaths builds the command line for homes holding commas, spaces and '=' and
// parses every option list back the way QEMU does: each path must come out whole.
func TestArgsEscapePaths(t *testing.T) {
	for _, home := range []string{
		"/home/a,b",
		"/home/my user",
		"/home/k=v",
		"/home/x,y=z w,,",
		"/Users/a,server=off,b",
	} {
		t.Run(home, func(t *testing.T) {
			dir := home + "/.berth/default"
			c := baseConfig("amd64")
			c.Kernel, c.Initrd = home+"/img/vmlinuz", home+"/img/initrd.img"
			c.Disks = []vm.Disk{
				{Path: home + "/img/root.img", ReadOnly: true, ID: "berth-root"},
				{Path: dir + "/data.img", ID: "berth-data"},
			}
			c.ConsoleLog = dir + "/console.log"
			c.RuntimeDir = dir + "/run"
			c.Shares = []vm.Share{
				{Tag: "berth0", HostPath: home + "/src", Device: vm.ShareVirtiofs},
				{Tag: "berth1", HostPath: home + "/p,q=r", ReadOnly: true},
			}
			args, err := Args(c, "tcg")
			if err != nil {
				t.Fatal(err)
			}
			// flag → the option lists it was given, in order.
			got := map[string][]map[string]string{}
			plain := map[string]string{}
			for i := 0; i+1 < len(args); i++ {
				switch args[i] {
				case "-kernel", "-initrd", "-append":
					plain[args[i]] = args[i+1]
					i++
				case "-chardev", "-drive", "-fsdev", "-device", "-object", "-machine", "-mon", "-netdev", "-name":
					got[args[i]] = append(got[args[i]], parseQemuOpts(t, args[i+1]))
					i++
				case "-qmp", "-serial", "-monitor":
					if strings.Contains(args[i+1], "/") {
						t.Errorf("%s %s: a path in QEMU's legacy chardev syntax", args[i], args[i+1])
					}
				}
			}
			// Plain arguments are not option lists: passed as they are.
			if plain["-kernel"] != c.Kernel || plain["-initrd"] != c.Initrd {
				t.Errorf("-kernel %q -initrd %q", plain["-kernel"], plain["-initrd"])
			}
			find := func(flag, key, val string) map[string]string {
				for _, o := range got[flag] {
					if o[key] == val {
						return o
					}
				}
				t.Errorf("no %s with %s=%q in %v", flag, key, val, got[flag])
				return map[string]string{}
			}
			tests := []struct{ flag, idKey, id, key, want string }{
				{"-drive", "id", "disk0", "file", c.Disks[0].Path},
				{"-drive", "id", "disk1", "file", c.Disks[1].Path},
				{"-chardev", "id", "console", "path", c.ConsoleLog},
				{"-chardev", "id", "qmp", "path", dir + "/run/qmp.sock"},
				{"-chardev", "id", "qmpev", "path", dir + "/run/qmp-events.sock"},
				{"-chardev", "id", "agent", "path", dir + "/run/agent.sock"},
				{"-chardev", "id", "vfs0", "path", dir + "/run/vfs0.sock"},
				{"-fsdev", "id", "fs1", "path", c.Shares[1].HostPath},
				{"-device", "chardev", "vfs0", "tag", "berth0"},
				{"-device", "fsdev", "fs1", "mount_tag", "berth1"},
				{"-device", "drive", "disk1", "serial", "berth-data"},
				{"-mon", "chardev", "qmp", "mode", "control"},
				{"-mon", "chardev", "qmpev", "mode", "control"},
				{"-object", "id", "mem", "share", "on"},
			}
			for _, tt := range tests {
				o := find(tt.flag, tt.idKey, tt.id)
				if o[tt.key] != tt.want {
					t.Errorf("%s %s=%s: %s = %q, want %q (all: %v)", tt.flag, tt.idKey, tt.id, tt.key, o[tt.key], tt.want, o)
				}
			}
			// The options after a path survive it.
			for _, id := range []string{"qmp", "qmpev"} {
				if o := find("-chardev", "id", id); o["server"] != "on" || o["wait"] != "off" {
					t.Errorf("%s chardev %v", id, o)
				}
			}
			if o := find("-fsdev", "id", "fs1"); o["readonly"] != "on" || o["security_model"] != "none" {
				t.Errorf("fsdev %v", o)
			}
			if o := find("-drive", "id", "disk1"); o["discard"] != "unmap" || o["format"] != "raw" {
				t.Errorf("drive %v", o)
			}
		})
	}
}

func TestShareDevice(t *testing.T) {
	if got := shareDevice(vm.Share{ReadOnly: true}); got != vm.Share9P {
		t.Errorf("read-only share on %s: QEMU's 9p refuses writes on the host side, virtiofsd cannot", got)
	}
	want := vm.Share9P
	if hasVirtiofsd() {
		want = vm.ShareVirtiofs
	}
	if got := shareDevice(vm.Share{}); got != want {
		t.Errorf("writable share: %s, want %s (virtiofsd usable: %v)", got, want, hasVirtiofsd())
	}
}

func TestRegistered(t *testing.T) {
	r, err := vm.Choose(vm.Config{Arch: "arm64", Accel: "tcg"})
	if err != nil || r.Name != "qemu" {
		t.Fatalf("Choose = %q, %v", r.Name, err)
	}
}
