package guestagent

// Well-known guest paths and addresses shared by the init and serve processes.
const (
	// AgentLogPath receives the serve process's log (and the console gets a copy).
	AgentLogPath = "/run/berth/agent.log"
	// dataMount is where the data disk is mounted; the engine's state lives under it and
	// its usage is reported to the host.
	dataMount = "/var/lib/berth"
)
