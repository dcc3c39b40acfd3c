//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// agentPorts are the ports a container might try for the control plane: the agent's vsock
// port and its neighbours, and the engine's and gvproxy's well-known TCP ports.
var (
	vsockProbePorts = []string{"1024", "1023", "1025", "2375", "2376", "80", "22", "10000", "65535"}
	tcpProbePorts   = []string{"1024", "2375", "2376", "2377", "80"}
)

// TestContainerIsolation: nothing in a container reaches the agent, the engine socket or
// hostd, by AF_VSOCK (64- and 32-bit, with the default seccomp profile and with seccomp off
// and every capability) or by TCP to any address of the VM, its gateway or the host's NAT
// address (docs/security.md).
func TestContainerIsolation(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start")
	e.busyboxImage(image)

	variants := []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"unconfined+ALL", []string{"--security-opt", "seccomp=unconfined", "--cap-add", "ALL"}},
	}
	for _, v := range variants {
		for _, bin := range []string{"testsrv", "testsrv32"} {
			t.Run(v.name+"/"+bin+"/vsock", func(t *testing.T) {
				args := append([]string{"run", "--rm"}, v.args...)
				args = append(args, image, bin, "vsock")
				args = append(args, vsockProbePorts...)
				out, err := e.docker_(nil, args...)
				if strings.Contains(out, "CONNECTED") || err != nil {
					t.Errorf("a container reached a vsock listener or the probe failed (err %v):\n%s", err, out)
				}
				if !strings.Contains(out, "vsock 1:1024 refused") || !strings.Contains(out, "vsock 2:1024 refused") {
					t.Errorf("the probe did not try CIDs 1 and 2:\n%s", out)
				}
			})
		}
		t.Run(v.name+"/tcp", func(t *testing.T) {
			// The container's own gateway (docker0, i.e. the VM) and the VM's address; and
			// the NAT address of the host's loopback on the agent's and the engine's ports
			// (the rest of the host's loopback is reachable on purpose:
			// host.docker.internal). The user-mode network's gateway address is not
			// probed: like any address outside the VM it is dialled on the host's own
			// network, where no berth listener is (docs/security.md).
			addrs := []string{"172.17.0.1", "192.168.127.2"}
			var targets []string
			for _, a := range addrs {
				for _, p := range tcpProbePorts {
					targets = append(targets, fmt.Sprintf("%s:%s", a, p))
				}
			}
			for _, p := range []string{"1024", "2375", "2376"} {
				targets = append(targets, "192.168.127.254:"+p)
			}
			args := append([]string{"run", "--rm"}, v.args...)
			args = append(append(args, image, "testsrv", "tcpprobe"), targets...)
			out, err := e.docker_(nil, args...)
			if strings.Contains(out, "CONNECTED") || err != nil {
				t.Errorf("a container reached a control-plane port or the probe failed (err %v):\n%s", err, out)
			}
		})
	}
}
