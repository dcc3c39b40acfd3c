//go:build darwin || linux

package netproxy

import "os"

// DatagramPair returns a connected SOCK_DGRAM unix socketpair with the buffers a VM link
// needs (close-on-exec): one end for the VM (vm.NIC.Conn), one for whatever serves the
// other side (the cluster network's switch, netproxy/clusternet).
func DatagramPair() (a, b *os.File, err error) { return datagramPair() }
