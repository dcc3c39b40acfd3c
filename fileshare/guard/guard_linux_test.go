package guard

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the berth binary (it handles Arg like cmd/berth's main) and
// as the probe that runs under the filter, selected by probeEnv.
const (
	probeEnv    = "BERTH_GUARD_PROBE"     // directory to probe in
	probeSetEnv = "BERTH_GUARD_PROBE_SET" // profile the probe installs itself ("" = none)
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Arg {
		Main(os.Args[2:])
	}
	if dir := os.Getenv(probeEnv); dir != "" {
		os.Exit(probe(dir, Profile(os.Getenv(probeSetEnv))))
	}
	os.Exit(m.Run())
}

// outcome is what one probe saw: the errno of the call (0: success) and, for a file the
// probe created or changed, its owner and mode afterwards.
type outcome struct {
	Errno int    `json:"errno"`
	UID   int    `json:"uid,omitempty"`
	GID   int    `json:"gid,omitempty"`
	Mode  uint32 `json:"mode,omitempty"`
	Exist bool   `json:"exist,omitempty"`
}

type legacyCall struct {
	name   string
	exists bool // the call changes an existing file (else it creates path)
	call   func(path string) unix.Errno
}

func ptr(s string) uintptr {
	b, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(b))
}

func rawErr(nr, a, b, c, d uintptr) unix.Errno {
	_, _, e := unix.Syscall6(nr, a, b, c, d, 0, 0)
	return e
}

func closeFd(nr, a, b, c, d uintptr) unix.Errno {
	fd, _, e := unix.Syscall6(nr, a, b, c, d, 0, 0)
	if e == 0 {
		unix.Close(int(fd))
	}
	return e
}

func errnoOf(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return int(e)
	}
	return -1
}

// probe tries everything a guest could ask a share server to do on the host, in dir,
// and writes the outcomes as JSON to fd 3 (which also checks that the wrapper passes
// inherited descriptors through).
func probe(dir string, install Profile) int {
	// setresuid below is the raw per-thread call virtiofsd makes: keep one thread.
	runtime.LockOSThread()
	unix.Umask(0o022)
	if install != "" {
		if err := Install(install); err != nil {
			fmt.Fprintln(os.Stderr, "install:", err)
			return 2
		}
	}
	res := map[string]outcome{}
	stat := func(name string, e error) {
		o := outcome{Errno: errnoOf(e)}
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(dir, name), &st) == nil {
			o.Exist, o.UID, o.GID, o.Mode = true, int(st.Uid), int(st.Gid), st.Mode
		}
		res[name] = o
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	create := func(name string, flags int, mode uint32) error {
		fd, err := unix.Openat(unix.AT_FDCWD, p(name), flags|unix.O_WRONLY|unix.O_CLOEXEC, mode)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}

	stat("creat-suid", create("creat-suid", unix.O_CREAT|unix.O_EXCL, 0o4755))
	stat("creat-sgid", create("creat-sgid", unix.O_CREAT|unix.O_EXCL, 0o2755))
	stat("creat-plain", create("creat-plain", unix.O_CREAT|unix.O_EXCL, 0o644))
	// O_TMPFILE: an unnamed file, linkable later; its mode is checked like O_CREAT's.
	{
		fd, err := unix.Openat(unix.AT_FDCWD, dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o4755)
		if err == nil {
			unix.Close(fd)
		}
		res["tmpfile-suid"] = outcome{Errno: errnoOf(err)}
	}
	create("target", unix.O_CREAT, 0o644)
	stat("target", unix.Fchmodat(unix.AT_FDCWD, p("target"), 0o4755, 0))
	res["chmod-suid"], res["target"] = res["target"], outcome{}
	stat("target", unix.Fchmodat(unix.AT_FDCWD, p("target"), 0o2755, 0))
	res["chmod-sgid"] = res["target"]
	stat("target", unix.Fchmodat(unix.AT_FDCWD, p("target"), 0o1755, 0))
	res["chmod-sticky"] = res["target"]
	stat("target", unix.Fchmodat(unix.AT_FDCWD, p("target"), 0o755, 0))
	res["chmod-plain"] = res["target"]
	{
		fd, err := unix.Open(p("target"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Fchmod(fd, 0o6755)
			unix.Close(fd)
		}
		stat("target", err)
		res["fchmod-suid"] = res["target"]
	}
	fdcwd := unix.AT_FDCWD
	stat("target", rawErr(unix.SYS_FCHMODAT2, uintptr(fdcwd), ptr(p("target")), 0o4755, 0))
	res["fchmodat2-suid"] = res["target"]
	stat("fifo", unix.Mkfifo(p("fifo"), 0o644))
	stat("chr", unix.Mknod(p("chr"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
	stat("reg-mknod", unix.Mknod(p("reg-mknod"), unix.S_IFREG|0o644, 0))
	// A v2 security.capability granting cap_net_raw, effective.
	vcap := make([]byte, 20)
	binary.LittleEndian.PutUint32(vcap[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(vcap[4:], 1<<unix.CAP_NET_RAW)
	res["setxattr-cap"] = outcome{Errno: errnoOf(unix.Setxattr(p("target"), "security.capability", vcap, 0))}
	res["lsetxattr-user"] = outcome{Errno: errnoOf(unix.Lsetxattr(p("target"), "user.x", []byte("1"), 0))}
	create("owned", unix.O_CREAT, 0o644)
	stat("owned", unix.Fchownat(unix.AT_FDCWD, p("owned"), 1000, 1000, unix.AT_SYMLINK_NOFOLLOW))
	res["chown"] = res["owned"]
	for _, l := range legacyCalls {
		if l.exists {
			create(l.name, unix.O_CREAT, 0o644)
		}
		stat(l.name, l.call(p(l.name)))
	}
	// What virtiofsd does around a create for a guest uid/gid 1000.
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0)
	res["setgroups"] = outcome{Errno: int(e)}
	_, _, e1 := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), 1000, ^uintptr(0))
	_, _, e2 := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 1000, ^uintptr(0))
	res["setresuid"] = outcome{Errno: int(e1 | e2)}
	stat("after-setresuid", create("after-setresuid", unix.O_CREAT|unix.O_EXCL, 0o644))
	// Back, for the unfiltered run.
	unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(os.Getuid()), ^uintptr(0))
	unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(os.Getgid()), ^uintptr(0))

	out := os.NewFile(3, "results")
	if out == nil {
		fmt.Fprintln(os.Stderr, "fd 3 missing")
		return 3
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "fd 3:", err)
		return 3
	}
	return 0
}

// runProbe runs the probe in a fresh directory: under profile p through Command (the
// test binary as the wrapper), or, with p empty, unconfined.
func runProbe(t *testing.T, p Profile) map[string]outcome {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Reachable and writable for uid 1000 too (t.TempDir's parent is 0700): unconfined,
	// the create after setresuid succeeds.
	dir, err := os.MkdirTemp("", "guard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if p == "" {
		cmd = exec.Command(self)
	} else {
		cmd, err = Command(p, []string{self})
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd.Env = append(os.Environ(), probeEnv+"="+dir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	res := map[string]outcome{}
	derr := json.NewDecoder(r).Decode(&res)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if derr != nil {
		t.Fatalf("probe results: %v", derr)
	}
	return res
}

var (
	eperm = int(unix.EPERM)
	uid   = os.Getuid()
	gid   = os.Getgid()
)

// TestFilterInProcess installs each profile in a probe process and checks what got
// through, against an unconfined run of the same probe.
func TestFilterInProcess(t *testing.T) {
	if nativeArch == nil {
		t.Skip("no share guard on " + runtime.GOARCH)
	}
	free := runProbe(t, "")
	// Without the filter, the probe really plants what the filter must stop: the checks
	// below would fail unconfined.
	for _, k := range []string{"creat-suid", "chmod-suid", "fifo"} {
		if free[k].Errno != 0 {
			t.Errorf("unconfined %s failed (errno %d): the probe tests nothing", k, free[k].Errno)
		}
	}
	if free["chmod-suid"].Mode&unix.S_ISUID == 0 {
		t.Errorf("unconfined chmod 4755 left mode %o", free["chmod-suid"].Mode)
	}
	if uid == 0 && free["after-setresuid"].UID != 1000 {
		t.Errorf("unconfined, a create after setresuid(-1, 1000, -1) is owned by %d, want 1000", free["after-setresuid"].UID)
	}
	if uid != 0 && free["setresuid"].Errno == 0 {
		t.Error("unconfined setresuid to 1000 succeeded as a normal user")
	}
	t.Logf("unconfined: %+v", free)

	for _, p := range []Profile{ProfileQEMU, ProfileVirtiofsd} {
		t.Run(string(p), func(t *testing.T) {
			res := runProbe(t, p)
			t.Logf("%+v", res)
			want := map[string]int{
				"creat-suid": eperm, "creat-sgid": eperm, "creat-plain": 0, "tmpfile-suid": eperm,
				"chmod-suid": eperm, "chmod-sgid": eperm, "chmod-sticky": 0, "chmod-plain": 0,
				"fchmod-suid": eperm, "fchmodat2-suid": eperm,
				"fifo": eperm, "chr": eperm, "reg-mknod": eperm,
				"setxattr-cap": eperm, "lsetxattr-user": eperm,
				// Faked: success, and nothing changes (checked below).
				"chown": 0,
			}
			for _, l := range legacyCalls {
				switch l.name {
				case "chown-legacy", "lchown-legacy":
					want[l.name] = 0
				default:
					want[l.name] = eperm
				}
			}
			if p == ProfileVirtiofsd {
				want["setresuid"], want["setgroups"], want["after-setresuid"] = 0, 0, 0
			}
			for k, w := range want {
				got, ok := res[k]
				if !ok {
					t.Errorf("%s: no outcome", k)
					continue
				}
				if got.Errno != w {
					t.Errorf("%s: errno %d (%v), want %d (%v)", k, got.Errno, unix.Errno(got.Errno), w, unix.Errno(w))
				}
			}
			for k, o := range res {
				if o.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					t.Errorf("%s: mode %o has setuid/setgid", k, o.Mode)
				}
				if o.Exist && o.Mode&unix.S_IFMT != unix.S_IFREG {
					t.Errorf("%s: not a regular file: mode %o", k, o.Mode)
				}
				if k == "after-setresuid" && p == ProfileQEMU {
					continue // setresuid is not filtered for QEMU, which never calls it
				}
				if o.Exist && (o.UID != uid || o.GID != gid) {
					t.Errorf("%s: owned by %d:%d, want %d:%d", k, o.UID, o.GID, uid, gid)
				}
			}
			for _, k := range []string{"creat-suid", "creat-sgid", "fifo", "chr", "reg-mknod"} {
				if res[k].Exist {
					t.Errorf("%s was created", k)
				}
			}
			if m := res["chmod-sticky"].Mode; m&0o7777 != 0o1755 {
				t.Errorf("chmod 1755 gave %o", m)
			}
			if m := res["chmod-plain"].Mode; m&0o7777 != 0o755 {
				t.Errorf("chmod 0755 gave %o", m)
			}
			if p == ProfileVirtiofsd && !res["after-setresuid"].Exist {
				t.Error("no file created after setresuid")
			}
		})
	}
}

// TestCommand checks the wrapper's command line.
func TestCommand(t *testing.T) {
	cmd, err := Command(ProfileVirtiofsd, []string{"/usr/lib/qemu/virtiofsd", "-o", "x"})
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want := []string{self, Arg, "virtiofsd", "--", "/usr/lib/qemu/virtiofsd", "-o", "x"}
	if fmt.Sprint(cmd.Args) != fmt.Sprint(want) || cmd.Path != self {
		t.Errorf("command %s %q, want %q", cmd.Path, cmd.Args, want)
	}
	if _, err := Command("bogus", []string{"x"}); err == nil {
		t.Error("unknown profile accepted")
	}
	if _, err := Command(ProfileQEMU, nil); err == nil {
		t.Error("empty argv accepted")
	}
}

// TestMainErrors: a bad command line or a missing program exits 126 with a message, and
// never runs anything unconfined.
func TestMainErrors(t *testing.T) {
	self, _ := os.Executable()
	for _, args := range [][]string{
		{Arg},
		{Arg, "qemu", "/bin/true"},
		{Arg, "bogus", "--", "/bin/true"},
		{Arg, "qemu", "--", "/nonexistent/program"},
	} {
		out, err := exec.Command(self, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 126 {
			t.Errorf("%q: %v, want exit status 126; output %s", args, err, out)
		}
	}
	if out, err := exec.Command(self, Arg, "qemu", "--", "true").CombinedOutput(); err != nil {
		t.Errorf("wrapped true (looked up in PATH): %v: %s", err, out)
	}
}

// seccompData is a struct seccomp_data for the x/net/bpf VM, whose loads are big-endian:
// each 32-bit word is stored big-endian at the offset the kernel's native (little-endian)
// layout gives it, so the VM reads the value the kernel would.
func seccompData(arch, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

func vmFor(t *testing.T, a archTable, p Profile) *bpf.VM {
	t.Helper()
	prog, err := program(a, p)
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(prog))
	for i, f := range prog {
		ins[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
		if _, raw := ins[i].(bpf.RawInstruction); raw {
			t.Fatalf("instruction %d %+v does not disassemble", i, f)
		}
	}
	v, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestProgram runs every rule of both profiles for amd64 and arm64 through a classic-BPF
// interpreter.
func TestProgram(t *testing.T) {
	var (
		allow   = uint32(unix.SECCOMP_RET_ALLOW)
		kill    = uint32(unix.SECCOMP_RET_KILL_PROCESS)
		deny    = uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
		nosys   = uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
		fake    = uint32(unix.SECCOMP_RET_ERRNO)
		atFDCWD = uint64(0xffffff9c) // AT_FDCWD as the int it is: the high word is ignored
		creat   = uint64(oCreat | unix.O_WRONLY)
		tmpfile = uint64(oTmpfile | unix.O_RDWR)
		hi      = uint64(0xdead) << 32 // garbage in the high words of 32-bit arguments
	)
	type call struct {
		sys        string
		args       []uint64
		qemu, vfsd uint32
	}
	calls := []call{
		{"chmod", []uint64{0, 0o4755}, deny, deny},
		{"chmod", []uint64{0, 0o2755}, deny, deny},
		{"chmod", []uint64{0, 0o6000}, deny, deny},
		{"chmod", []uint64{0, 0o755}, allow, allow},
		{"chmod", []uint64{0, 0o1777 | hi}, allow, allow},
		{"fchmod", []uint64{3, 0o4700}, deny, deny},
		{"fchmod", []uint64{3, 0o644}, allow, allow},
		{"fchmodat", []uint64{atFDCWD, 0, 0o2711, 0}, deny, deny},
		{"fchmodat", []uint64{atFDCWD, 0, 0o711, 0}, allow, allow},
		{"fchmodat2", []uint64{atFDCWD, 0, 0o4711, unix.AT_SYMLINK_NOFOLLOW}, deny, deny},
		{"fchmodat2", []uint64{atFDCWD, 0, 0o711, unix.AT_SYMLINK_NOFOLLOW}, allow, allow},
		{"creat", []uint64{0, 0o4755}, deny, deny},
		{"creat", []uint64{0, 0o755}, allow, allow},
		{"open", []uint64{0, creat, 0o4755}, deny, deny},
		{"open", []uint64{0, creat, 0o644}, allow, allow},
		{"open", []uint64{0, tmpfile, 0o2755}, deny, deny},
		{"open", []uint64{0, unix.O_RDONLY, 0o4755}, allow, allow}, // no create: mode unused
		{"openat", []uint64{atFDCWD, 0, creat | unix.O_EXCL, 0o4755}, deny, deny},
		{"openat", []uint64{atFDCWD, 0, creat, 0o2755 | hi}, deny, deny},
		{"openat", []uint64{atFDCWD, 0, tmpfile, 0o4600}, deny, deny},
		{"openat", []uint64{atFDCWD, 0, creat, 0o1755}, allow, allow},
		{"openat", []uint64{atFDCWD, 0, unix.O_RDWR, 0o6777}, allow, allow},
		{"openat2", []uint64{atFDCWD, 0, 0, 24}, nosys, nosys},
		{"mknod", []uint64{0, unix.S_IFIFO | 0o644, 0}, deny, deny},
		{"mknod", []uint64{0, unix.S_IFREG | 0o644, 0}, deny, deny},
		{"mknodat", []uint64{atFDCWD, 0, unix.S_IFCHR | 0o600, 0x103}, deny, deny},
		{"setxattr", nil, deny, deny},
		{"lsetxattr", nil, deny, deny},
		{"fsetxattr", nil, deny, deny},
		{"setxattrat", nil, deny, deny},
		{"chown", []uint64{0, 1000, 1000}, fake, fake},
		{"fchown", []uint64{3, 0, 0}, fake, fake},
		{"lchown", []uint64{0, 1000, 1000}, fake, fake},
		{"fchownat", []uint64{atFDCWD, 0, 1000, 1000, 0}, fake, fake},
	}
	for _, s := range []string{"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups"} {
		calls = append(calls, call{s, []uint64{0xffffffff, 1000, 0xffffffff}, allow, fake})
	}
	for _, a := range []archTable{archAMD64, archARM64} {
		t.Run(a.name, func(t *testing.T) {
			for _, p := range []Profile{ProfileQEMU, ProfileVirtiofsd} {
				v := vmFor(t, a, p)
				run := func(arch, nr uint32, args ...uint64) uint32 {
					t.Helper()
					r, err := v.Run(seccompData(arch, nr, args...))
					if err != nil {
						t.Fatal(err)
					}
					return uint32(r)
				}
				tested := map[string]bool{}
				for _, c := range calls {
					nr, ok := a.nr[c.sys]
					if !ok {
						continue
					}
					tested[c.sys] = true
					want := c.qemu
					if p == ProfileVirtiofsd {
						want = c.vfsd
					}
					if got := run(a.audit, nr, c.args...); got != want {
						t.Errorf("%s: %s%o = %#x, want %#x", p, c.sys, c.args, got, want)
					}
				}
				for s := range a.nr {
					if !tested[s] {
						t.Errorf("%s: %s has no test case", p, s)
					}
				}
				// Everything else is allowed: read (0 on amd64, 63 on arm64), mkdirat,
				// unlinkat, renameat2, ...
				for _, nr := range []uint32{0, 1, 34, 35, 63, 64, 258, 263, 276, 316, 451, 1000} {
					if isFiltered(a, p, nr) {
						continue
					}
					if got := run(a.audit, nr, 0o7777, 0o7777, 0o7777, 0o7777); got != allow {
						t.Errorf("%s: syscall %d = %#x, want allow", p, nr, got)
					}
				}
				// Another architecture's calls (i386 through int 0x80, arm32) kill.
				for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, archAMD64.audit ^ archARM64.audit ^ a.audit} {
					if got := run(arch, 0); got != kill {
						t.Errorf("%s: arch %#x = %#x, want kill", p, arch, got)
					}
				}
				// x32 numbers on amd64 share its AUDIT_ARCH: refused.
				if a.x32 {
					for _, nr := range []uint32{x32SyscallBit | 90, x32SyscallBit} { // chmod, read
						if got := run(a.audit, nr, 0, 0o4755); got != nosys {
							t.Errorf("%s: x32 %#x = %#x, want ENOSYS", p, nr, got)
						}
					}
				}
			}
		})
	}
}

func isFiltered(a archTable, p Profile, nr uint32) bool {
	for _, r := range rules(p) {
		if n, ok := a.nr[r.sys]; ok && n == nr {
			return true
		}
	}
	return false
}

// TestNumbers checks the native table against x/sys/unix, and that arm64 lacks the calls
// it lacks.
func TestNumbers(t *testing.T) {
	if nativeArch == nil {
		t.Skip("no share guard on " + runtime.GOARCH)
	}
	if len(nativeNumbers) != len(nativeArch.nr) {
		t.Errorf("%d numbers from x/sys/unix, %d in the table", len(nativeNumbers), len(nativeArch.nr))
	}
	for s, n := range nativeNumbers {
		if nativeArch.nr[s] != n {
			t.Errorf("%s: table has %d, x/sys/unix %d", s, nativeArch.nr[s], n)
		}
	}
	if oCreat != unix.O_CREAT || oTmpfile != unix.O_TMPFILE&^unix.O_DIRECTORY {
		t.Errorf("open flags: O_CREAT %#x, __O_TMPFILE %#x", unix.O_CREAT, unix.O_TMPFILE&^unix.O_DIRECTORY)
	}
	for _, s := range []string{"chmod", "chown", "lchown", "open", "creat", "mknod"} {
		if _, ok := archARM64.nr[s]; ok {
			t.Errorf("arm64 has no %s syscall", s)
		}
	}
}
