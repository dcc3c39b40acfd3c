//go:build !linux

package guestagent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
)

// The agent runs only in a Linux guest; these keep the package compiling elsewhere so the
// host's tests can share its code.

var errNotLinux = errors.New("berth-agent runs only on linux")

func kernelRelease() string                { return "" }
func uptime() time.Duration                { return 0 }
func diskUsage(string) (u proto.DiskUsage) { return u }
func (s *Server) setTime(int64) error      { return errNotLinux }
func (s *Server) exec(context.Context, *yamux.Stream, *proto.ExecRequest) error {
	return errNotLinux
}

// errNotGuest is what the guest entry points return on a system that cannot be the guest.
var errNotGuest = errors.New("berth-agent can only run as the init of the Linux guest")

// Init is the guest's PID 1 (init_linux.go); elsewhere it exits with an error.
func Init(log *slog.Logger) {
	log.Error("cannot run as init", "err", errNotGuest)
	os.Exit(1)
}

// RunServe is the guest serve loop; see channel_linux.go.
func RunServe(log *slog.Logger) error { return errNotLinux }

func daemonProcAttr() *syscall.SysProcAttr { return nil }

// The engine runs only in a Linux guest: Linux's SIGSTOP and SIGCONT, never sent here.
const (
	sigStop = syscall.Signal(19)
	sigCont = syscall.Signal(18)
)

// adoptOrReap finds leftover daemons in /proc; see engine_adopt_linux.go.
func (e *Engine) adoptOrReap() (dockerd, containerd, registry instance) { return nil, nil, nil }

func (s *Server) mountShares(st *yamux.Stream, _ []proto.Mount) error { return reply(st, errNotLinux) }
func (s *Server) notify(context.Context, *yamux.Stream) error         { return errNotLinux }
