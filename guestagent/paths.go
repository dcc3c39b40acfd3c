package guestagent

// Well-known guest paths and addresses shared by the init and serve processes.
const (
	// AgentLogPath receives the serve process's log (and the console gets a copy).
	AgentLogPath = "/run/berth/agent.log"
	// HostGatewayIP is netproxy's address that is NAT'ed to the host's loopback.
	HostGatewayIP = "192.168.127.254"
	// dataMount is where the data disk is mounted; the engine's state lives under it and
	// its usage is reported to the host.
	dataMount = "/var/lib/berth"
)
