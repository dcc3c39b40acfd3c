package guard

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// archTable is what the filter needs to know about one architecture. Both tables are
// compiled on every Linux architecture so the tests can check the arm64 program on amd64;
// the native table is checked against x/sys/unix's numbers in the tests.
type archTable struct {
	name  string
	audit uint32
	// x32: on x86-64, numbers with __X32_SYSCALL_BIT set run the x32 ABI under the same
	// AUDIT_ARCH; they are refused outright.
	x32 bool
	nr  map[string]uint32
}

const x32SyscallBit = 0x40000000

// Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h).
// arm64 has no chmod, chown, lchown, open, creat or mknod: only the *at variants.
var archAMD64 = archTable{
	name: "amd64", audit: unix.AUDIT_ARCH_X86_64, x32: true,
	nr: map[string]uint32{
		"open": 2, "creat": 85, "openat": 257, "openat2": 437,
		"chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
		"chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260,
		"mknod": 133, "mknodat": 259,
		"setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463,
		"setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
		"setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123,
	},
}

var archARM64 = archTable{
	name: "arm64", audit: unix.AUDIT_ARCH_AARCH64,
	nr: map[string]uint32{
		"openat": 56, "openat2": 437,
		"fchmod": 52, "fchmodat": 53, "fchmodat2": 452,
		"fchown": 55, "fchownat": 54,
		"mknodat":  33,
		"setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463,
		"setregid": 143, "setgid": 144, "setreuid": 145, "setuid": 146,
		"setresuid": 147, "setresgid": 149, "setfsuid": 151, "setfsgid": 152, "setgroups": 159,
	},
}

// Open flags, the same on amd64 and arm64: O_CREAT, and __O_TMPFILE (O_TMPFILE without
// its O_DIRECTORY part, which differs between the two).
const (
	oCreat   = 0x40
	oTmpfile = 0x400000
	// sGuard: S_ISUID|S_ISGID. The sticky bit (01000) is harmless and allowed.
	sGuard = 0o6000
)

// rule kinds
const (
	ruleMode   = iota // EPERM if args[mode] & sGuard
	ruleCreate        // EPERM if args[flags] & (O_CREAT|__O_TMPFILE) and args[mode] & sGuard
	ruleErrno         // always SECCOMP_RET_ERRNO|errno (errno 0: a faked success)
)

type rule struct {
	sys   string
	kind  int
	flags int // argument index of the open flags (ruleCreate)
	mode  int // argument index of the mode (ruleMode, ruleCreate)
	errno unix.Errno
}

// rules lists what the profile p filters; syscalls the architecture lacks are skipped.
func rules(p Profile) []rule {
	r := []rule{
		{sys: "chmod", kind: ruleMode, mode: 1},
		{sys: "fchmod", kind: ruleMode, mode: 1},
		{sys: "fchmodat", kind: ruleMode, mode: 2},
		{sys: "fchmodat2", kind: ruleMode, mode: 2},
		{sys: "creat", kind: ruleMode, mode: 1},
		{sys: "open", kind: ruleCreate, flags: 1, mode: 2},
		{sys: "openat", kind: ruleCreate, flags: 2, mode: 3},
		// openat2's mode sits in a struct behind a pointer, out of a filter's reach; glibc
		// and QEMU fall back to openat on ENOSYS.
		{sys: "openat2", kind: ruleErrno, errno: unix.ENOSYS},
		// Regular files are created with open; mknod would only make fifos, sockets and
		// device nodes.
		{sys: "mknod", kind: ruleErrno, errno: unix.EPERM},
		{sys: "mknodat", kind: ruleErrno, errno: unix.EPERM},
		// Neither server needs xattrs in berth's configuration; this keeps
		// security.capability (and ACLs) off host files.
		{sys: "setxattr", kind: ruleErrno, errno: unix.EPERM},
		{sys: "lsetxattr", kind: ruleErrno, errno: unix.EPERM},
		{sys: "fsetxattr", kind: ruleErrno, errno: unix.EPERM},
		{sys: "setxattrat", kind: ruleErrno, errno: unix.EPERM},
		// A guest chown must not give a host file to another uid. Faking success keeps
		// tar and cp -a in the guest working. QEMU needs this too: when berth runs as root
		// without virtiofsd, QEMU's 9p server (security_model=none) runs as root and would
		// chown every file it creates to the guest's uid.
		{sys: "chown", kind: ruleErrno},
		{sys: "fchown", kind: ruleErrno},
		{sys: "lchown", kind: ruleErrno},
		{sys: "fchownat", kind: ruleErrno},
	}
	if p == ProfileVirtiofsd {
		// virtiofsd switches its thread to the guest's uid/gid around every create; as
		// no-ops the process stays the user who started it. Not in the QEMU profile: a
		// future -runas must not be silently ignored.
		for _, s := range []string{"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups"} {
			r = append(r, rule{sys: s, kind: ruleErrno})
		}
	}
	return r
}

// seccomp_data offsets: nr (int), arch (u32), instruction_pointer (u64), args[6] (u64).
// Both architectures are little-endian: the low word of args[i] is at 16+8*i.
const (
	offNr   = 0
	offArch = 4
)

func argLow(i int) uint32 { return uint32(16 + 8*i) }

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldAbs   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jgeK    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jsetK   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	retK    = unix.BPF_RET | unix.BPF_K
	retKill = unix.SECCOMP_RET_KILL_PROCESS
	retOK   = unix.SECCOMP_RET_ALLOW
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA }

// program builds the classic-BPF seccomp program of profile p for architecture a. Each
// filtered syscall is one `jeq nr` that skips over its own short body when it does not
// match; every body ends in a return, so the accumulator it clobbers never leaks on.
func program(a archTable, p Profile) ([]unix.SockFilter, error) {
	if !p.valid() {
		return nil, fmt.Errorf("unknown share guard profile %q", p)
	}
	prog := []unix.SockFilter{
		stmt(ldAbs, offArch),
		jump(jeqK, a.audit, 1, 0),
		stmt(retK, retKill),
		stmt(ldAbs, offNr),
	}
	if a.x32 {
		prog = append(prog, jump(jgeK, x32SyscallBit, 0, 1), stmt(retK, retErrno(unix.ENOSYS)))
	}
	for _, r := range rules(p) {
		nr, ok := a.nr[r.sys]
		if !ok {
			continue
		}
		var body []unix.SockFilter
		switch r.kind {
		case ruleMode:
			body = []unix.SockFilter{
				stmt(ldAbs, argLow(r.mode)),
				jump(jsetK, sGuard, 0, 1),
				stmt(retK, retErrno(unix.EPERM)),
				stmt(retK, retOK),
			}
		case ruleCreate:
			body = []unix.SockFilter{
				stmt(ldAbs, argLow(r.flags)),
				jump(jsetK, oCreat|oTmpfile, 0, 3),
				stmt(ldAbs, argLow(r.mode)),
				jump(jsetK, sGuard, 0, 1),
				stmt(retK, retErrno(unix.EPERM)),
				stmt(retK, retOK),
			}
		case ruleErrno:
			body = []unix.SockFilter{stmt(retK, retErrno(r.errno))}
		}
		// The accumulator holds nr here: every body returns before anything reloads it.
		prog = append(prog, jump(jeqK, nr, 0, uint8(len(body))))
		prog = append(prog, body...)
	}
	prog = append(prog, stmt(retK, retOK))
	if len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp program too long: %d instructions", len(prog))
	}
	return prog, nil
}
