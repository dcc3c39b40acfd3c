// Command smoke-init is a stand-in for berth-agent used by boot-smoke.sh: as /init of the
// initrd built by build.sh it does what the agent's boot does (load /etc/berth/modules in
// order, find the root disk by its virtio serial, mount it read-only, switch into it) and then
// checks that the engine in root.img works: dockerd starts, a container runs. It prints
// "BERTH-SMOKE: OK" or "BERTH-SMOKE: FAIL ..." on the console and powers the VM off.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const rootSerial = "berth-root"

// checks runs in the root image (bash), after switching into it.
const checks = `set -eux
/usr/sbin/dockerd --version
/usr/bin/containerd --version
/usr/sbin/runc --version
/usr/sbin/iptables --version
modprobe br_netfilter
iptables -t nat -L -n >/dev/null   # nf_tables is autoloaded through the kernel's modprobe
mount -t tmpfs tmpfs /var/lib/docker
mount -t tmpfs tmpfs /var/lib/containerd
mount -t tmpfs tmpfs /etc/docker
ip link set lo up
dockerd --log-level=warn >/run/dockerd.log 2>&1 &
for i in $(seq 1 240); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
echo "smoke: engine $(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup-v{{.CgroupVersion}}')"
tar -C / -c usr/bin/busybox | docker import - smoke:1 >/dev/null
docker run --rm smoke:1 /usr/bin/busybox echo container-ran
`

func logf(format string, a ...any) { fmt.Printf("smoke: "+format+"\n", a...) }

func main() {
	err := run()
	if err != nil {
		fmt.Printf("BERTH-SMOKE: FAIL %v\n", err)
	} else {
		fmt.Println("BERTH-SMOKE: OK")
	}
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}

func mountAll(prefix string) error {
	for _, m := range []struct{ src, dir, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		dir := prefix + m.dir
		os.MkdirAll(dir, 0o755)
		if err := syscall.Mount(m.src, dir, m.typ, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	return nil
}

func run() error {
	start := time.Now()
	if err := mountAll(""); err != nil {
		return err
	}
	var u syscall.Utsname
	syscall.Uname(&u)
	kver := cstr(u.Release[:])
	moddir := "/lib/modules/" + kver

	// modules.dep: name -> file, as the agent resolves /etc/berth/modules.
	dep, err := os.ReadFile(moddir + "/modules.dep")
	if err != nil {
		return err
	}
	paths := map[string]string{}
	for _, line := range strings.Split(string(dep), "\n") {
		p, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
		paths[name] = moddir + "/" + p
	}
	list, err := os.ReadFile("/etc/berth/modules")
	if err != nil {
		return err
	}
	loaded := 0
	for _, name := range strings.Fields(string(list)) {
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s not in modules.dep", name)
		}
		if err := loadModule(p); err != nil {
			// ENODEV: hardware/CPU feature absent (crc32c_intel without SSE4.2 under TCG).
			logf("module %s: %v", name, err)
			continue
		}
		loaded++
	}
	logf("kernel %s: loaded %d modules in %v", kver, loaded, time.Since(start))

	dev := ""
	for i := 0; i < 100 && dev == ""; i++ {
		serials, _ := filepath.Glob("/sys/block/*/serial")
		for _, s := range serials {
			b, _ := os.ReadFile(s)
			if strings.TrimSpace(string(b)) == rootSerial {
				dev = "/dev/" + filepath.Base(filepath.Dir(s))
			}
		}
		if dev == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if dev == "" {
		return fmt.Errorf("no disk with serial %q", rootSerial)
	}
	os.MkdirAll("/newroot", 0o755)
	if err := syscall.Mount(dev, "/newroot", "ext4", syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	logf("root %s mounted read-only", dev)
	for _, d := range []string{"/run", "/tmp"} {
		if err := syscall.Mount("tmpfs", "/newroot"+d, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("tmpfs %s: %w", d, err)
		}
	}
	// switch_root: PID 1 shares its fs_struct with the kernel threads, so after this chroot
	// the kernel's usermode helpers (modprobe autoload) see the root image too.
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		syscall.Unmount(d, syscall.MNT_DETACH)
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := syscall.Mount(".", "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return err
	}
	os.Chdir("/")
	if err := mountAll(""); err != nil {
		return err
	}
	if err := syscall.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		return fmt.Errorf("cgroup2: %w", err)
	}
	os.WriteFile("/run/resolv.conf", []byte("nameserver 127.0.0.1\n"), 0o644)

	cmd := exec.Command("/bin/bash", "-c", checks)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	var out bytes.Buffer
	cmd.Stdout = os.Stdout
	cmd.Stderr = &out
	err = cmd.Run()
	os.Stdout.Write(out.Bytes())
	if err != nil {
		if b, _ := os.ReadFile("/run/dockerd.log"); len(b) > 0 {
			os.Stdout.Write(b)
		}
		return fmt.Errorf("checks: %w", err)
	}
	logf("checks passed %v after /init", time.Since(start))
	return nil
}

func loadModule(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	params := []byte{0}
	_, _, errno := syscall.Syscall(syscall.SYS_INIT_MODULE,
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&params[0])))
	if errno != 0 && errno != syscall.EEXIST {
		return errno
	}
	return nil
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}
