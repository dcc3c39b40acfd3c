package guestagent

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return time.Duration(f * float64(time.Second))
}

func diskUsage(path string) (u proto.DiskUsage) {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return u
	}
	u.Total = st.Blocks * uint64(st.Bsize)
	u.Used = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	return u
}

func (s *Server) setTime(unixNano int64) error {
	tv := unix.NsecToTimeval(unixNano)
	return unix.Settimeofday(&tv)
}

// The signals that stop and continue a napping engine (EngineNap).
const (
	sigStop = syscall.SIGSTOP
	sigCont = syscall.SIGCONT
)

// daemonProcAttr puts a supervised daemon in a session (and process group) of its own, so
// a signal meant for the agent's group is not delivered to it too, and a serve process that
// dies while the engine naps (EngineNap) leaves no orphaned process group with stopped
// members in its session, which the kernel would send SIGHUP (containerd dies of it). The
// daemons outlive the serve process on purpose (no PDEATHSIG): the next serve process
// adopts them (Engine.Start) and continues them.
func daemonProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
