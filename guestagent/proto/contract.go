package proto

// The rest of the guest contract: what hostd puts on the kernel command line for the agent,
// and the addresses of the user-mode network (netproxy) that both sides assume.
const (
	// FlagListeners is the kernel command line flag that carries the port-forwarding
	// policy for guest listeners (store.Config.PortListeners; docs/ports.md).
	FlagListeners = "berth.listeners"
	// FlagCluster puts the guest on a cluster network (docs/cluster.md): its value is
	// "NODE,MAC,IP/PREFIX" (ClusterFlag); the agent gives the NIC with MAC that address
	// and no route beyond its subnet, and names the guest NODE.
	FlagCluster = "berth.cluster"

	// Subnet is netproxy's network. Its first address is the gateway (DHCP, DNS, NAT to
	// the host's network), the second the guest (GuestIP), the last but one HostNATIP.
	Subnet = "192.168.127.0/24"
	// GuestIP is the guest's static lease.
	GuestIP = "192.168.127.2"
	// HostNATIP is NAT'ed to the host's loopback: host.docker.internal in containers.
	HostNATIP = "192.168.127.254"
)

// The local registry (docs/cluster.md, "The local registry"): the name every engine of an
// instance or cluster with a registry resolves, and the port it serves on in the guest.
const (
	RegistryName = "registry.local"
	RegistryPort = 5000
	// RegistryEndpoint is how engines name it: image references, certs.d's directory.
	RegistryEndpoint = "registry.local:5000"
)
