package guestagent

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"golang.org/x/sys/unix"
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

// daemonProcAttr puts a supervised daemon in its own process group, so a signal meant for
// the agent's group is not delivered to it too. The daemons outlive the serve process on
// purpose (no PDEATHSIG): the next serve process adopts them (Engine.Start).
func daemonProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
