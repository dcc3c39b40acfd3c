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
		wantErr error
	}{
		{name: "amd64 tcg", cfg: func() vm.Config { return baseConfig("amd64") }, accel: "tcg", want: []string{
			"-machine q35", "-accel tcg,thread=multi -cpu max", "-smp 2", "-m 2048",
			"-append console=ttyS0 quiet",
			"-drive if=none,id=disk0,format=raw,file=/img/root.img,readonly=on -device virtio-blk-pci,drive=disk0,serial=berth-root",
			"file=/home/u/.berth/default/data,,1.img,discard=unmap",
			"-netdev dgram,id=net0,local.type=fd,local.str=3 -device virtio-net-pci,netdev=net0,romfile=,mac=5a:94:ef:e4:0c:ee",
			"socket,id=agent,path=/home/u/.berth/default/run/agent.sock,server=on,wait=off",
			"virtserialport,chardev=agent,name=io.berth.agent",
			"-qmp unix:/home/u/.berth/default/run/qmp.sock,server=on,wait=off",
			"-no-reboot",
		}},
		{name: "arm64", cfg: func() vm.Config { return baseConfig("arm64") }, accel: "tcg", want: []string{"-machine virt", "console=ttyAMA0", "-cpu max,pauth-impdef=on"}},
		{name: "kvm", cfg: func() vm.Config { return baseConfig("amd64") }, accel: "kvm", want: []string{"-accel kvm -cpu host"}},
		{name: "share", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.Shares = []vm.Share{{Tag: "home", HostPath: "/home/u", ReadOnly: true}}
			return c
		}, accel: "tcg", want: []string{"-fsdev local,id=fs0,path=/home/u,security_model=none,readonly=on", "mount_tag=home"}},
		{name: "virtiofs", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.Shares = []vm.Share{{Tag: "berth0", HostPath: "/home/u", VirtiofsSocket: "/r/vfs0.sock"}}
			return c
		}, accel: "tcg", want: []string{"memory-backend-memfd,id=mem,size=2048M,share=on", "-machine q35,memory-backend=mem",
			"-chardev socket,id=vfs0,path=/r/vfs0.sock -device vhost-user-fs-pci,chardev=vfs0,tag=berth0"}},
		{name: "two nics", cfg: func() vm.Config {
			c := baseConfig("amd64")
			c.NICs = append(c.NICs, c.NICs[0])
			return c
		}, accel: "tcg", wantErr: vm.ErrUnsupported},
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
		})
	}
}
