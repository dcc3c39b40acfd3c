package guard

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install confines the calling process, every thread of it, with profile p's filter. It
// sets no_new_privs first (which an unprivileged process needs to install a filter, and
// which the filter's rules rely on: no execve may regain what they deny). Neither can be
// undone, and both are inherited across fork and execve.
func Install(p Profile) error {
	if nativeArch == nil {
		return fmt.Errorf("share guard: unsupported architecture %s", runtime.GOARCH)
	}
	prog, err := program(*nativeArch, p)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("share guard: prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// TSYNC: the Go runtime has several threads already; all of them get the filter (and
	// no_new_privs), or the call fails and returns the id of a thread that could not.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("share guard: seccomp(SECCOMP_SET_MODE_FILTER): %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("share guard: seccomp: thread %d could not be synchronized", r)
	}
	return nil
}

// Command returns a command that runs argv (argv[0] a path or a name looked up in $PATH)
// confined by profile p: the current executable, which must be a berth binary whose main
// calls Main for Arg, run as `<self> __shareguard <profile> -- argv...`. The caller may set
// Stdin/Stdout/Stderr, ExtraFiles (they keep their numbers: the wrapper closes nothing
// before execve) and SysProcAttr (Pdeathsig survives execve) as for argv itself.
func Command(p Profile, argv []string) (*exec.Cmd, error) {
	if !p.valid() {
		return nil, fmt.Errorf("unknown share guard profile %q", p)
	}
	if len(argv) == 0 {
		return nil, errors.New("share guard: empty command")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("share guard: cannot find the berth executable: %w", err)
	}
	return exec.Command(self, append([]string{Arg, string(p), "--"}, argv...)...), nil
}

// Main is the hidden `__shareguard PROFILE -- PROGRAM ARGS...` entry point (args without
// the program name and Arg): it installs the filter and executes PROGRAM in place of the
// current process. It never returns; on an error it exits with status 126.
func Main(args []string) {
	err := run(args)
	fmt.Fprintf(os.Stderr, "berth %s: %v\n", Arg, err)
	os.Exit(126)
}

func run(args []string) error {
	if len(args) < 3 || args[1] != "--" {
		return fmt.Errorf("usage: berth %s {%s|%s} -- PROGRAM [ARG...]", Arg, ProfileQEMU, ProfileVirtiofsd)
	}
	argv := args[2:]
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	// The same thread installs the filter and executes: it has no_new_privs for sure.
	runtime.LockOSThread()
	if err := Install(Profile(args[0])); err != nil {
		return err
	}
	if err := unix.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}
