//go:build darwin || linux

package netproxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Socket buffers as Lima and vfkit set them on both ends. Virtualization.framework wants
// SO_RCVBUF at least twice SO_SNDBUF; on Linux the kernel caps both at net.core.[rw]mem_max.
const (
	sndBuf = 1 << 20
	rcvBuf = 4 << 20
)

// AttachDatagram creates a SOCK_DGRAM unix socketpair, serves the host end (one ethernet frame
// per datagram) until ctx ends or the Network is closed, and returns the other end for the VM:
// QEMU takes it as `-netdev dgram,id=n0,local.type=fd,local.str=N` (e.g. through
// exec.Cmd.ExtraFiles), vz as a FileHandleNetworkDeviceAttachment. The caller owns the returned
// file: close it once the VM holds its own copy (QEMU: after Start) or has stopped (vz).
func (n *Network) AttachDatagram(ctx context.Context) (*os.File, error) {
	host, vm, err := datagramPair()
	if err != nil {
		return nil, fmt.Errorf("failed to create VM network socketpair: %w", err)
	}
	conn, err := net.FileConn(host) // dups the fd, so host is closed either way
	_ = host.Close()
	if err != nil {
		_ = vm.Close()
		return nil, fmt.Errorf("failed to use host end of VM network socketpair: %w", err)
	}
	if err := n.serve(ctx, conn, "datagram"); err != nil {
		_ = vm.Close()
		return nil, fmt.Errorf("failed to attach VM network link: %w", err)
	}
	return vm, nil
}

func datagramPair() (host, vm *os.File, err error) {
	// darwin has no SOCK_CLOEXEC: hold ForkLock so no child forked meanwhile inherits the fds.
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		for _, o := range []struct {
			name      string
			opt, size int
		}{
			{"SO_SNDBUF", syscall.SO_SNDBUF, sndBuf},
			{"SO_RCVBUF", syscall.SO_RCVBUF, rcvBuf},
		} {
			if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, o.opt, o.size); err != nil {
				_ = syscall.Close(fds[0])
				_ = syscall.Close(fds[1])
				return nil, nil, fmt.Errorf("setsockopt %s=%d: %w", o.name, o.size, err)
			}
		}
	}
	return os.NewFile(uintptr(fds[0]), "berth-net-host"), os.NewFile(uintptr(fds[1]), "berth-net-vm"), nil
}
