//go:build linux

package guard

import "golang.org/x/sys/unix"

// nativeNumbers are x/sys/unix's numbers for the syscalls of archARM64.
var nativeNumbers = map[string]uint32{
	"openat": unix.SYS_OPENAT, "openat2": unix.SYS_OPENAT2,
	"fchmod": unix.SYS_FCHMOD, "fchmodat": unix.SYS_FCHMODAT, "fchmodat2": unix.SYS_FCHMODAT2,
	"fchown": unix.SYS_FCHOWN, "fchownat": unix.SYS_FCHOWNAT,
	"mknodat":  unix.SYS_MKNODAT,
	"setxattr": unix.SYS_SETXATTR, "lsetxattr": unix.SYS_LSETXATTR, "fsetxattr": unix.SYS_FSETXATTR, "setxattrat": unix.SYS_SETXATTRAT,
	"setuid": unix.SYS_SETUID, "setgid": unix.SYS_SETGID, "setreuid": unix.SYS_SETREUID, "setregid": unix.SYS_SETREGID,
	"setgroups": unix.SYS_SETGROUPS, "setresuid": unix.SYS_SETRESUID, "setresgid": unix.SYS_SETRESGID,
	"setfsuid": unix.SYS_SETFSUID, "setfsgid": unix.SYS_SETFSGID,
}

// legacyCalls: arm64 has no path-based chmod/chown/open/creat/mknod.
var legacyCalls []legacyCall
