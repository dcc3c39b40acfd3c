// Package doctor checks what an instance needs, one check at a time, each with a
// pass/warn/fail result and the exact fix: the hypervisor, the guest image, free space,
// the daemon, its sockets and docker context, the docker CLI and its plugins, host ports,
// the guest's clock, DNS, and the shares. `berth doctor` prints it (docs/cli.md).
//
// No check sends traffic off the host: the guest's DNS check asks netproxy's own resolver
// (host.docker.internal), and outbound reachability is judged by resolving a name only
// (Options.ProbeHost), never by connecting to it.
package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// Results.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
	Skip = "skip"
)

// Check is one result.
type Check struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Report is every check of one run.
type Report struct {
	Instance string  `json:"instance"`
	OK       bool    `json:"ok"` // no check failed
	Checks   []Check `json:"checks"`
}

// Options tune a run.
type Options struct {
	// ProbeHost is resolved in the guest to judge outbound reachability (resolving only);
	// empty skips that check.
	ProbeHost string
	// MinFreeBytes is the free space below which the state dir's file system fails the
	// check (the VM pauses when the data disk cannot grow); default 1 GiB.
	MinFreeBytes uint64
	// Client reaches hostd; nil means the instance's control socket.
	Client *api.Client
	// LookPath finds programs (exec.LookPath); tests replace it.
	LookPath func(string) (string, error)
}

// DefaultProbeHost is resolved in the guest by default: the registry `docker pull` uses.
const DefaultProbeHost = "registry-1.docker.io"

type run struct {
	inst   *store.Instance
	cfg    store.Config
	opts   Options
	client *api.Client
	status *api.Status
	checks []Check
}

func (r *run) add(name, status, msg, fix string) {
	r.checks = append(r.checks, Check{Name: name, Status: status, Message: msg, Fix: fix})
}

// Run checks inst. Checks that need the running instance are skipped (with the fix to
// start it) when it is not running.
func Run(ctx context.Context, inst *store.Instance, opts Options) Report {
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 1 << 30
	}
	if opts.LookPath == nil {
		opts.LookPath = exec.LookPath
	}
	r := &run{inst: inst, opts: opts, client: opts.Client}
	if r.client == nil {
		r.client = api.NewClient(inst.Path(store.ControlSock))
	}
	cfg, err := inst.Config()
	if err != nil {
		r.add("config", Fail, err.Error(), "fix "+inst.Path(store.ConfigFile)+" (berth config edit "+inst.Name+")")
		cfg = store.DefaultConfig()
	} else {
		r.add("config", Pass, "berth.yaml is valid", "")
	}
	r.cfg = cfg
	r.hypervisor()
	r.image()
	r.freeSpace()
	r.daemon(ctx)
	r.sockets(ctx)
	r.dockerCLI(ctx)
	r.ports(ctx)
	r.guest(ctx)
	rep := Report{Instance: inst.Name, OK: true, Checks: r.checks}
	for _, c := range r.checks {
		if c.Status == Fail {
			rep.OK = false
		}
	}
	return rep
}

func (r *run) hypervisor() {
	const name = "hypervisor"
	switch runtime.GOOS {
	case "linux":
		cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		kvm := err == nil
		if f != nil {
			f.Close()
		}
		accel, cerr := vm.ChooseAccel(vm.Host{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUInfo: string(cpuinfo), KVMUsable: kvm}, r.cfg.Arch, r.cfg.Accel)
		qemu := "qemu-system-x86_64"
		if r.cfg.Arch == "arm64" {
			qemu = "qemu-system-aarch64"
		}
		if _, err := r.opts.LookPath(qemu); err != nil {
			r.add(name, Fail, qemu+" is not installed", "install QEMU (Debian/Ubuntu: sudo apt-get install qemu-system-x86 qemu-system-arm qemu-utils)")
			return
		}
		switch {
		case cerr != nil:
			r.add(name, Fail, cerr.Error(), "set accel: auto in berth.yaml (berth config set accel=auto)")
		case accel == "kvm":
			r.add(name, Pass, "KVM is usable", "")
		case !kvm && err != nil && errors.Is(err, os.ErrPermission):
			r.add(name, Warn, "/dev/kvm is not writable for you: VMs run under TCG, 10-30x slower", "add yourself to the kvm group: sudo usermod -aG kvm $USER, then log in again")
		default:
			r.add(name, Warn, "no usable KVM (no /dev/kvm, or the CPU shows no vmx/svm): VMs run under TCG, 10-30x slower", "enable virtualization (VT-x/AMD-V) in the firmware, or nested virtualization for this VM")
		}
	case "darwin":
		out, err := exec.Command("/usr/sbin/sysctl", "-n", "kern.hv_support").Output()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			r.add(name, Fail, "Hypervisor.framework is not supported on this Mac (kern.hv_support is not 1)", "use a Mac with hardware virtualization; in a VM, enable nested virtualization")
			return
		}
		exe, _ := os.Executable()
		ent, err := exec.Command("/usr/bin/codesign", "-d", "--entitlements", "-", "--xml", exe).CombinedOutput()
		if err != nil || !bytes.Contains(ent, []byte("com.apple.security.virtualization")) {
			r.add(name, Fail, exe+" lacks the com.apple.security.virtualization entitlement", "reinstall berth from its signed package, or sign it: make sign-darwin")
			return
		}
		r.add(name, Pass, "Virtualization.framework is usable and berth is entitled", "")
	case "windows":
		out, err := exec.Command("wsl.exe", "--status").CombinedOutput()
		if err != nil {
			r.add(name, Fail, "WSL 2 is not usable: "+strings.TrimSpace(string(bytes.ReplaceAll(out, []byte{0}, nil))), "run `wsl --install` as administrator and reboot (needs Hyper-V / Virtual Machine Platform)")
			return
		}
		r.add(name, Pass, "WSL 2 (Hyper-V) is usable", "")
	default:
		r.add(name, Warn, "not checked on "+runtime.GOOS, "")
	}
}

func (r *run) image() {
	img, err := image.Find(r.cfg)
	if err != nil {
		r.add("image", Fail, err.Error(), "berth install --image-url URL (docs/install.md)")
		return
	}
	dir := filepath.Dir(img.Kernel)
	if err := image.Verify(dir, r.cfg.Arch); err != nil {
		r.add("image", Fail, fmt.Sprintf("guest image in %s is damaged: %v", dir, err), "reinstall it: berth install --image-url URL (docs/install.md)")
		return
	}
	msg := "guest image in " + dir
	if m, err := image.ReadManifest(dir); err == nil && len(m.Artifacts) > 0 {
		msg += " matches its manifest's checksums"
	} else {
		msg += " is complete (no manifest with checksums)"
	}
	r.add("image", Pass, msg, "")
}

func (r *run) freeSpace() {
	free, err := store.FreeSpace(r.inst.Dir)
	if err != nil {
		r.add("disk space", Warn, "cannot measure free space: "+err.Error(), "")
		return
	}
	// The data disk is sparse: it can still grow by its size less what it holds.
	var growth uint64
	if st, err := os.Stat(r.inst.Path(store.DataDisk)); err == nil {
		size := uint64(r.cfg.Disk) << 30
		if alloc := store.Allocated(st); alloc < size {
			growth = size - alloc
		}
	}
	where := r.inst.Dir
	switch {
	case free < r.opts.MinFreeBytes:
		r.add("disk space", Fail, fmt.Sprintf("only %s free on the file system of %s: the VM pauses when its data disk cannot grow", human(free), where),
			fmt.Sprintf("free at least %s there (docker system prune in the VM frees space only inside the data disk), or move berth's state with BERTH_HOME", human(r.opts.MinFreeBytes)))
	case free < growth:
		r.add("disk space", Warn, fmt.Sprintf("%s free on the file system of %s, but the data disk may grow by %s more", human(free), where, human(growth)),
			"free space there, or lower disk in berth.yaml for a new instance")
	default:
		r.add("disk space", Pass, fmt.Sprintf("%s free for the state dir and the data disk", human(free)), "")
	}
}

func human(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

func (r *run) startFix() string {
	if r.inst.Name == store.DefaultName {
		return "berth start"
	}
	return "berth start " + r.inst.Name
}

func (r *run) daemon(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := r.client.Status(sctx)
	if err != nil {
		r.add("daemon", Fail, "the instance's daemon (hostd) does not answer: "+err.Error(), r.startFix())
		return
	}
	r.status = &st
	if st.State != api.StateRunning {
		msg := "the instance is " + st.State
		if st.Error != "" {
			msg += ": " + st.Error
		}
		r.add("daemon", Fail, msg, r.startFix()+" (after berth stop if it is stuck); see berth logs hostd")
		return
	}
	r.add("daemon", Pass, fmt.Sprintf("hostd %d runs the instance (%s)", st.PID, st.Accel), "")
}

func (r *run) sockets(ctx context.Context) {
	sock := r.inst.Path(store.DockerSock)
	if r.status == nil || r.status.State != api.StateRunning {
		r.add("docker socket", Skip, "the instance is not running", r.startFix())
	} else if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		r.add("docker socket", Fail, sock+" is missing", "berth restart "+r.inst.Name)
	} else if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		r.add("docker socket", Fail, fmt.Sprintf("%s is %v: other users could use the engine", sock, fi.Mode().Perm()), "berth restart "+r.inst.Name)
	} else if v, err := pingDocker(ctx, sock); err != nil {
		r.add("docker socket", Fail, "the engine does not answer on "+sock+": "+err.Error(), "berth logs engine "+r.inst.Name+"; berth restart "+r.inst.Name)
	} else {
		r.add("docker socket", Pass, sock+" answers (engine API "+v+")", "")
	}

	name := dockerctx.Name(r.inst.Name)
	host, err := dockerctx.Host(name)
	want := "unix://" + sock
	switch {
	case err != nil:
		r.add("docker context", Fail, err.Error(), "berth restart "+r.inst.Name+" rewrites it")
	case host == "":
		r.add("docker context", Fail, "docker context "+name+" does not exist", "berth restart "+r.inst.Name+" writes it")
	case runtime.GOOS != "windows" && host != want:
		r.add("docker context", Fail, fmt.Sprintf("docker context %s points at %s, not %s", name, host, want), "berth restart "+r.inst.Name+" rewrites it")
	default:
		cur, _ := dockerctx.Current()
		if cur != name && os.Getenv("DOCKER_HOST") == "" {
			r.add("docker context", Warn, fmt.Sprintf("docker context %s exists; the current one is %q", name, cur), "docker context use "+name)
		} else {
			r.add("docker context", Pass, "docker context "+name+" points at the instance", "")
		}
	}
}

// pingDocker asks the engine for /_ping through the socket (local only).
func pingDocker(ctx context.Context, sock string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	return resp.Header.Get("Api-Version"), nil
}

func (r *run) dockerCLI(ctx context.Context) {
	docker, err := r.opts.LookPath("docker")
	if err != nil {
		r.add("docker CLI", Fail, "docker is not on PATH", "install the Docker CLI (docs/install.md): brew install docker, apt-get install docker-ce-cli, or winget install Docker.DockerCLI")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, docker, "--version").Output()
	if err != nil {
		r.add("docker CLI", Fail, docker+" --version failed: "+err.Error(), "reinstall the Docker CLI")
		return
	}
	r.add("docker CLI", Pass, strings.TrimSpace(string(out))+" at "+docker, "")
	for _, p := range []struct{ name, fix string }{
		{"buildx", "install docker-buildx (BuildKit builds): brew install docker-buildx, or apt-get install docker-buildx-plugin"},
		{"compose", "install docker-compose: brew install docker-compose, or apt-get install docker-compose-plugin"},
	} {
		path := findPlugin("docker-" + p.name)
		if path == "" {
			r.add("docker "+p.name, Warn, "the docker "+p.name+" plugin is not installed", p.fix)
			continue
		}
		meta, err := exec.CommandContext(cctx, path, "docker-cli-plugin-metadata").Output()
		var m struct{ Version string }
		if err != nil || json.Unmarshal(meta, &m) != nil {
			r.add("docker "+p.name, Warn, path+" does not answer as a CLI plugin", p.fix)
			continue
		}
		r.add("docker "+p.name, Pass, fmt.Sprintf("%s %s at %s", p.name, m.Version, path), "")
	}
}

// pluginDirs are where the docker CLI looks for plugins (cli-plugins/manager).
func pluginDirs() []string {
	var dirs []string
	if d, err := dockerctx.ConfigDir(); err == nil {
		dirs = append(dirs, filepath.Join(d, "cli-plugins"))
	}
	switch runtime.GOOS {
	case "windows":
		dirs = append(dirs, filepath.Join(os.Getenv("ProgramData"), "Docker", "cli-plugins"), filepath.Join(os.Getenv("ProgramFiles"), "Docker", "cli-plugins"))
	default:
		dirs = append(dirs, "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
			"/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins", "/opt/homebrew/lib/docker/cli-plugins")
	}
	return dirs
}

func findPlugin(name string) string {
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	for _, d := range pluginDirs() {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

func (r *run) ports(ctx context.Context) {
	if r.status == nil || r.status.State != api.StateRunning {
		r.add("ports", Skip, "the instance is not running", r.startFix())
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ports, err := r.client.Ports(pctx)
	if err != nil {
		r.add("ports", Fail, "cannot list forwarded ports: "+err.Error(), r.startFix())
		return
	}
	failed := 0
	for _, p := range ports {
		if p.State != "failed" {
			continue
		}
		failed++
		what := "a listener in the VM"
		fix := fmt.Sprintf("stop what holds %s port %d on the host (lsof -nP -i :%d), or listen on another port in the VM", p.Proto, p.HostPort, p.HostPort)
		if p.Container != "" {
			what = "container " + p.Container
			fix = fmt.Sprintf("stop what holds %s port %d on the host (lsof -nP -i :%d), or publish container %s on another host port (docker run -p OTHER:CONTAINER_PORT ...)", p.Proto, p.HostPort, p.HostPort, p.Container)
		}
		r.add("port "+fmt.Sprint(p.HostPort), Fail, fmt.Sprintf("%s port %s:%d of %s is in conflict on the host: %s", p.Proto, p.HostIP, p.HostPort, what, p.Error), fix)
	}
	if failed == 0 {
		r.add("ports", Pass, fmt.Sprintf("%d forwarded ports, none in conflict", len(ports)), "")
	}
}

// guest runs the checks that need the VM: clock, DNS, outbound resolution, shares.
func (r *run) guest(ctx context.Context) {
	if r.status == nil || r.status.State != api.StateRunning {
		for _, n := range []string{"guest clock", "guest DNS", "shares"} {
			r.add(n, Skip, "the instance is not running", r.startFix())
		}
		return
	}
	// Clock: the guest's time against the host's, halved round trip subtracted.
	t0 := time.Now()
	out, code, err := r.exec(ctx, "date", "+%s%N")
	rtt := time.Since(t0)
	if err != nil || code != 0 {
		r.add("guest clock", Warn, fmt.Sprintf("cannot read the guest's clock: %v (exit %d)", err, code), "")
	} else {
		var ns int64
		fmt.Sscan(strings.TrimSpace(out), &ns)
		skew := time.Unix(0, ns).Sub(t0.Add(rtt / 2))
		if skew < 0 {
			skew = -skew
		}
		// The command's own start in the VM is part of the round trip: judge loosely.
		slack := rtt/2 + 500*time.Millisecond
		switch {
		case skew > 5*time.Second+slack:
			r.add("guest clock", Fail, fmt.Sprintf("the guest's clock is %s off the host's", skew.Round(time.Millisecond)), "berth restart "+r.inst.Name+" (hostd sets the guest clock at boot and after a pause)")
		case skew > time.Second+slack:
			r.add("guest clock", Warn, fmt.Sprintf("the guest's clock is %s off the host's", skew.Round(time.Millisecond)), "it is corrected within a minute; if not, berth restart "+r.inst.Name)
		default:
			r.add("guest clock", Pass, fmt.Sprintf("within %s of the host's", max(skew, time.Millisecond).Round(time.Millisecond)), "")
		}
	}
	// DNS: netproxy's own resolver answers host.docker.internal without asking anyone.
	out, code, err = r.exec(ctx, "getent", "hosts", "host.docker.internal")
	if err != nil || code != 0 || !strings.Contains(out, proto.HostNATIP) {
		r.add("guest DNS", Fail, fmt.Sprintf("the guest cannot resolve host.docker.internal through berth's resolver: %q %v", strings.TrimSpace(out), err),
			"check dns in berth.yaml (berth config get dns); berth restart "+r.inst.Name+"; see berth logs hostd")
	} else {
		r.add("guest DNS", Pass, "host.docker.internal resolves to "+proto.HostNATIP+" in the guest", "")
	}
	if r.opts.ProbeHost == "" {
		r.add("guest outbound", Skip, "no probe host", "")
	} else {
		// Resolving only: no connection is made.
		out, code, err = r.exec(ctx, "getent", "hosts", r.opts.ProbeHost)
		if err != nil || code != 0 {
			r.add("guest outbound", Fail, fmt.Sprintf("the guest cannot resolve %s: the host's DNS or network is down, or a VPN blocks it", r.opts.ProbeHost),
				"check the host's network and DNS; behind a proxy set proxy: in berth.yaml (docs/config.md)")
		} else {
			r.add("guest outbound", Pass, fmt.Sprintf("%s resolves in the guest (%s)", r.opts.ProbeHost, strings.Fields(out)[0]), "")
		}
	}
	r.shares(ctx)
}

func (r *run) shares(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	mounts, err := r.client.Mounts(mctx)
	if err != nil {
		r.add("shares", Fail, "cannot list the shares: "+err.Error(), r.startFix())
		return
	}
	if len(mounts) == 0 {
		r.add("shares", Warn, "no host directory is shared: bind mounts of host paths are refused", "add shares in berth.yaml (docs/file-sharing.md)")
		return
	}
	for _, m := range mounts {
		name := "share " + m.Path
		if m.State != "mounted" {
			r.add(name, Fail, fmt.Sprintf("%s is %s: %s", m.Path, m.State, m.Error), "berth restart "+r.inst.Name+"; see berth logs hostd")
			continue
		}
		if m.ReadOnly {
			if _, code, err := r.exec(ctx, "test", "-r", m.Path); err != nil || code != 0 {
				r.add(name, Fail, m.Path+" is mounted but not readable in the guest", "berth restart "+r.inst.Name)
			} else {
				r.add(name, Pass, m.Path+" is mounted read-only ("+m.Type+")", "")
			}
			continue
		}
		probe := filepath.ToSlash(filepath.Join(m.Path, fmt.Sprintf(".berth-doctor-%d", time.Now().UnixNano())))
		_, code, err := r.exec(ctx, "sh", "-c", `touch "$1" && rm -f "$1"`, "sh", probe)
		if err != nil || code != 0 {
			r.add(name, Fail, m.Path+" is mounted but not writable in the guest", "check the directory's permissions on the host; berth restart "+r.inst.Name)
			continue
		}
		r.add(name, Pass, m.Path+" is mounted and writable ("+m.Type+")", "")
	}
}

// exec runs argv in the guest and returns its stdout and exit code.
func (r *run) exec(ctx context.Context, argv ...string) (string, int, error) {
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := r.client.Exec(ectx, api.ExecRequest{Argv: argv})
	if err != nil {
		return "", -1, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ectx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	proto.WriteFrame(conn, proto.FrameStdinClose, nil)
	var out bytes.Buffer
	for {
		kind, payload, err := proto.ReadFrame(conn.R)
		if err != nil {
			return out.String(), -1, err
		}
		switch kind {
		case proto.FrameStdout:
			if out.Len() < 1<<20 {
				out.Write(payload)
			}
		case proto.FrameExit:
			code, err := proto.ParseExit(payload)
			return out.String(), code, err
		}
	}
}
