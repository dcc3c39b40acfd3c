// Package clusternet is the network a berth cluster's members share: one layer-2 switch
// (gvisor-tap-vsock's tap.Switch) per cluster, served by `berth netd NAME`, with one port
// per member VM. Each member's hostd creates a datagram socketpair, hands one end to netd
// over netd's control socket (SCM_RIGHTS) and gives the other to its VM as a second NIC.
//
// The switch has no gateway stack: its gateway port is a device that drops every frame,
// so nothing on the cluster network is routed, NAT'ed or answered by the host. Members
// address each other statically (proto.FlagCluster); each keeps its own NAT through its
// primary NIC. See docs/cluster.md.
package clusternet

import "errors"

// ErrUnsupported is returned where unix datagram sockets are not available (Windows:
// WSL2 brings its own network, docs/cluster.md).
var ErrUnsupported = errors.New("the cluster network needs unix datagram sockets (macOS or Linux)")

// Request is one line a client writes on netd's control socket. An "attach" carries the
// member's end of its datagram socketpair as SCM_RIGHTS on the same write; the connection
// then stays open for the life of the attachment, and closing it detaches the member.
type Request struct {
	Op     string `json:"op"` // "attach", "status" or "stop"
	Member string `json:"member,omitempty"`
}

// Reply is netd's one-line answer.
type Reply struct {
	OK      bool         `json:"ok"`
	Error   string       `json:"error,omitempty"`
	PID     int          `json:"pid,omitempty"`
	Members []LinkStatus `json:"members,omitempty"` // status: the attached members
}

// LinkStatus is one attached member.
type LinkStatus struct {
	Member  string `json:"member"`
	MAC     string `json:"mac"`
	Dropped uint64 `json:"dropped"` // frames dropped: full socket buffer or a foreign source MAC
}
