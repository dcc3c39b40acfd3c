//go:build linux

package guard

import "golang.org/x/sys/unix"

// nativeNumbers are x/sys/unix's numbers for the syscalls of archAMD64.
var nativeNumbers = map[string]uint32{
	"open": unix.SYS_OPEN, "creat": unix.SYS_CREAT, "openat": unix.SYS_OPENAT, "openat2": unix.SYS_OPENAT2,
	"chmod": unix.SYS_CHMOD, "fchmod": unix.SYS_FCHMOD, "fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2,
	"chown": unix.SYS_CHOWN, "fchown": unix.SYS_FCHOWN, "lchown": unix.SYS_LCHOWN, "fchownat": unix.SYS_FCHOWNAT,
	"mknod": unix.SYS_MKNOD, "mknodat": unix.SYS_MKNODAT,
	"setxattr": unix.SYS_SETXATTR, "lsetxattr": unix.SYS_LSETXATTR, "fsetxattr": unix.SYS_FSETXATTR, "setxattrat": unix.SYS_SETXATTRAT,
	"setuid": unix.SYS_SETUID, "setgid": unix.SYS_SETGID, "setreuid": unix.SYS_SETREUID, "setregid": unix.SYS_SETREGID,
	"setgroups": unix.SYS_SETGROUPS, "setresuid": unix.SYS_SETRESUID, "setresgid": unix.SYS_SETRESGID,
	"setfsuid": unix.SYS_SETFSUID, "setfsgid": unix.SYS_SETFSGID,
}

// legacyCalls are the amd64-only path-based calls the helper also probes directly:
// name, whether the file exists first, and the call.
var legacyCalls = []legacyCall{
	{"chmod-suid-legacy", true, func(p string) unix.Errno { return rawErr(unix.SYS_CHMOD, ptr(p), 0o4755, 0, 0) }},
	{"creat-suid-legacy", false, func(p string) unix.Errno { return closeFd(unix.SYS_CREAT, ptr(p), 0o4755, 0, 0) }},
	{"open-suid-legacy", false, func(p string) unix.Errno {
		return closeFd(unix.SYS_OPEN, ptr(p), unix.O_CREAT|unix.O_WRONLY, 0o4755, 0)
	}},
	{"mknod-fifo-legacy", false, func(p string) unix.Errno { return rawErr(unix.SYS_MKNOD, ptr(p), unix.S_IFIFO|0o644, 0, 0) }},
	{"chown-legacy", true, func(p string) unix.Errno { return rawErr(unix.SYS_CHOWN, ptr(p), 1000, 1000, 0) }},
	{"lchown-legacy", true, func(p string) unix.Errno { return rawErr(unix.SYS_LCHOWN, ptr(p), 1000, 1000, 0) }},
}
