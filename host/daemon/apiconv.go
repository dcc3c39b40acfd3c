package daemon

import (
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// The control API has types of its own (host/api/guest.go); these convert the agent's
// answers into them, so a guest protocol change stops here.

func apiGuest(i *proto.Info) *api.Guest {
	if i == nil {
		return nil
	}
	return &api.Guest{
		ProtocolVersion:   i.ProtocolVersion,
		AgentVersion:      i.AgentVersion,
		Kernel:            i.Kernel,
		Arch:              i.Arch,
		KernelBoot:        i.KernelBoot,
		Uptime:            i.Uptime,
		Engine:            string(i.Engine),
		EngineVersion:     i.EngineVersion,
		IP:                i.IP,
		DataDisk:          apiDisk(i.DataDisk),
		EngineAPIVersion:  i.EngineAPIVersion,
		ContainerdVersion: i.ContainerdVersion,
		RuncVersion:       i.RuncVersion,
		InitVersion:       i.InitVersion,
		OS:                i.OS,
	}
}

func apiDisk(u proto.DiskUsage) api.DiskUsage {
	return api.DiskUsage{Total: u.Total, Used: u.Used}
}
