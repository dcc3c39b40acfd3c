//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// probeVsock tries to reach a vsock listener from where it runs (a container): the agent
// must be reachable from the host alone. It prints one line per attempt and returns 3 if
// any connect succeeded.
func probeVsock(ports []string) int {
	cids := []uint32{unix.VMADDR_CID_HYPERVISOR, unix.VMADDR_CID_LOCAL, unix.VMADDR_CID_HOST, 3}
	if own, err := localCID(); err == nil {
		cids = append(cids, own)
	} else {
		fmt.Printf("own CID unknown: %v\n", err)
	}
	connected := 0
	for _, cid := range cids {
		for _, p := range ports {
			port, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bad port:", p)
				return 2
			}
			err = vsockConnect(cid, uint32(port))
			if err == nil {
				connected++
				fmt.Printf("vsock %d:%d CONNECTED\n", cid, port)
			} else {
				fmt.Printf("vsock %d:%d refused: %v\n", cid, port, err)
			}
		}
	}
	if connected > 0 {
		return 3
	}
	return 0
}

func localCID() (uint32, error) {
	f, err := os.Open("/dev/vsock")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return unix.IoctlGetUint32(int(f.Fd()), unix.IOCTL_VM_SOCKETS_GET_LOCAL_CID)
}

// vsockConnect connects with a 2 s bound (a non-blocking connect and a poll).
func vsockConnect(cid, port uint32) error {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
	if err == nil {
		return nil
	}
	if err != unix.EINPROGRESS {
		return fmt.Errorf("connect: %w", err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd, 2000)
	if err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("connect: timed out")
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("getsockopt: %w", err)
	}
	if soerr != 0 {
		return fmt.Errorf("connect: %w", unix.Errno(soerr))
	}
	return nil
}

// probeTCP tries each address and returns 3 if any accepted a connection.
func probeTCP(addrs []string) int {
	connected := 0
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err == nil {
			c.Close()
			connected++
			fmt.Printf("tcp %s CONNECTED\n", a)
		} else {
			fmt.Printf("tcp %s refused: %v\n", a, err)
		}
	}
	if connected > 0 {
		return 3
	}
	return 0
}
