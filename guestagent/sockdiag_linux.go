package guestagent

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

// The listener scan asks the kernel over NETLINK_SOCK_DIAG (inet_diag) for exactly the
// sockets it wants: listening TCP sockets, and unconnected UDP ones. Reading
// /proc/net/{tcp,tcp6} makes the kernel walk its established-connection hash table too and
// format a text line for every socket, listening or not; under TCG that was half of the
// idle agent's CPU. Debian builds inet_diag, tcp_diag and udp_diag as modules: the agent
// loads them at boot (engineModules), and the kernel would autoload them otherwise.

// Sizes and offsets of the kernel's structures (linux/inet_diag.h, linux/netlink.h); none
// of them are in x/sys/unix.
const (
	sizeofNlMsghdr       = 16 // nlmsghdr
	sizeofInetDiagReqV2  = 56 // inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid
	sizeofInetDiagMsg    = 72 // inet_diag_msg: family, state, timer, retrans, inet_diag_sockid, 5×u32
	diagMsgSport         = 4  // inet_diag_sockid starts after the four bytes; ports are big-endian
	diagMsgDport         = 6
	diagMsgSrc           = 8 // 16 bytes: an IPv4 address is the first four
	sockDiagRecvBuf      = 32 << 10
	sockDiagRecvTimeoutS = 2 // the kernel answers a dump at once; this only bounds the wait
)

// TCP states (include/net/tcp_states.h) as inet_diag reports them; an unconnected UDP socket
// is in TCP_CLOSE, as /proc/net/udp shows (st 07).
const (
	tcpListen = 10
	tcpClose  = 7
)

// sockDiag is one NETLINK_SOCK_DIAG socket with its receive buffer.
type sockDiag struct {
	fd  int
	seq uint32
	buf []byte
}

func openSockDiag() (*sockDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("failed to open a NETLINK_SOCK_DIAG socket: %w", err)
	}
	tv := unix.Timeval{Sec: sockDiagRecvTimeoutS}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to set a receive timeout on the sock_diag socket: %w", err)
	}
	return &sockDiag{fd: fd, buf: make([]byte, sockDiagRecvBuf)}, nil
}

func (s *sockDiag) Close() error { return unix.Close(s.fd) }

// dump asks for the sockets of one family and protocol whose state is in states (a bit
// mask, 1<<state) and calls fn with each inet_diag_msg. An error the kernel answers with
// (ENOENT: no diag handler for the protocol, its module missing) is returned.
func (s *sockDiag) dump(family, protocol uint8, states uint32, fn func(msg []byte)) error {
	s.seq++
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], s.seq)
	r := req[sizeofNlMsghdr:]
	r[0], r[1] = family, protocol
	ne.PutUint32(r[4:], states)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("failed to send the sock_diag request: %w", err)
	}
	for {
		n, _, flags, from, err := unix.Recvmsg(s.fd, s.buf, nil, 0)
		if err != nil {
			return fmt.Errorf("failed to read the sock_diag answer: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return fmt.Errorf("sock_diag answer truncated (over %d bytes)", len(s.buf))
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue // not from the kernel
		}
		done, err := s.parse(s.buf[:n], fn)
		if err != nil || done {
			return err
		}
	}
}

// parse walks the netlink messages of one read; done is true at the dump's end.
func (s *sockDiag) parse(b []byte, fn func(msg []byte)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		seq := ne.Uint32(b[8:])
		if l < sizeofNlMsghdr || l > len(b) {
			return false, fmt.Errorf("malformed sock_diag answer (message length %d of %d bytes)", l, len(b))
		}
		body := b[sizeofNlMsghdr:l]
		if next := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		if seq != s.seq {
			continue // an answer to an earlier request (one that failed half way)
		}
		switch typ {
		case unix.NLMSG_DONE:
			// Its body is the dump's own status: negative if it failed half way.
			if len(body) >= 4 {
				if errno := int32(ne.Uint32(body)); errno < 0 {
					return false, fmt.Errorf("sock_diag dump failed: %w", unix.Errno(-errno))
				}
			}
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return false, fmt.Errorf("malformed sock_diag error message")
			}
			if errno := int32(ne.Uint32(body)); errno != 0 {
				return false, fmt.Errorf("sock_diag request refused: %w", unix.Errno(-errno))
			}
			return true, nil // an ack
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(body) >= sizeofInetDiagMsg {
				fn(body)
			}
		}
	}
	return false, nil
}

// diagQuery is one sock_diag request of the scan, and what its answers become.
type diagQuery struct {
	family, protocol uint8
	proto            string
	state            uint8
}

// The scan's requests, in /proc/net's order: tcp, tcp6, udp, udp6.
var diagQueries = []diagQuery{
	{unix.AF_INET, unix.IPPROTO_TCP, "tcp", tcpListen}, {unix.AF_INET6, unix.IPPROTO_TCP, "tcp", tcpListen},
	{unix.AF_INET, unix.IPPROTO_UDP, "udp", tcpClose}, {unix.AF_INET6, unix.IPPROTO_UDP, "udp", tcpClose},
}

// appendPort decodes one inet_diag_msg (at least sizeofInetDiagMsg bytes) and appends its
// forwards, with the same rules as parseProcNet.
func (q diagQuery) appendPort(out []proto.Port, m []byte, loopback bool) []proto.Port {
	// The kernel filters by family and state; checked again so that the list cannot differ
	// from /proc/net's.
	if m[0] != q.family || m[1] != q.state {
		return out
	}
	// Only unconnected UDP sockets are servers.
	if q.proto == "udp" && binary.BigEndian.Uint16(m[diagMsgDport:]) != 0 {
		return out
	}
	n := net.IPv4len
	if q.family == unix.AF_INET6 {
		n = net.IPv6len
	}
	ip := make(net.IP, n)
	copy(ip, m[diagMsgSrc:diagMsgSrc+n])
	return appendListener(out, q.proto, ip, int(binary.BigEndian.Uint16(m[diagMsgSport:])), loopback)
}

// scanSockDiag finds listening sockets over NETLINK_SOCK_DIAG: the same list as
// ScanListeners("/proc/net", loopback), in the same order of families and protocols.
func scanSockDiag(loopback bool) ([]proto.Port, error) {
	s, err := openSockDiag()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	out := []proto.Port{}
	seen := map[string]bool{}
	for _, q := range diagQueries {
		var ports []proto.Port
		err := s.dump(q.family, q.protocol, 1<<q.state, func(m []byte) { ports = q.appendPort(ports, m, loopback) })
		if err != nil {
			return nil, fmt.Errorf("sock_diag %s (family %d): %w", q.proto, q.family, err)
		}
		for _, p := range ports {
			if !seen[p.Key()] {
				seen[p.Key()] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}
