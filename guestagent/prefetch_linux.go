package guestagent

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// engineFiles are what the engine's start reads from the root image: the daemons, the
// shim, runc, docker-proxy, docker-init, nft with its libraries (dockerd's firewall:
// firewall.go) and iptables with its libraries and extensions (swarm nodes' firewall, about
// ninety runs as dockerd starts). Globs; missing ones are skipped.
var engineFiles = []string{
	"/usr/sbin/dockerd",
	"/usr/bin/containerd",
	"/usr/bin/containerd-shim-runc-v2",
	"/usr/sbin/runc",
	"/usr/sbin/docker-proxy",
	"/usr/bin/tini-static",
	"/usr/sbin/nft",
	"/usr/lib/*-linux-gnu/libnftables.so.*",
	"/usr/lib/*-linux-gnu/libjansson.so.*",
	"/usr/lib/*-linux-gnu/libedit.so.*",
	"/usr/lib/*-linux-gnu/libgmp.so.*",
	"/usr/sbin/xtables-nft-multi",
	"/usr/lib/*-linux-gnu/lib*tables.so.*",
	"/usr/lib/*-linux-gnu/libnftnl.so.*",
	"/usr/lib/*-linux-gnu/libmnl.so.*",
	"/usr/lib/*-linux-gnu/libsystemd.so.*",
	"/usr/lib/*-linux-gnu/libseccomp.so.*",
	"/usr/lib/*-linux-gnu/xtables/*.so",
}

// prefetch asks the kernel to read files into the page cache (POSIX_FADV_WILLNEED: the
// reads are queued and the call returns). Started cold, dockerd faults its 90 MiB binary
// in 128 KiB readahead steps, each an emulated interrupt and virtio round trip on the
// vCPU; queued early, the same reads are served by the hypervisor's I/O thread while the
// guest loads modules and configures its network. It returns the bytes asked for.
func prefetch(log *slog.Logger, globs []string) int64 {
	start := time.Now()
	var total int64
	for _, g := range globs {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED); err == nil {
					total += fi.Size()
				}
			}
			f.Close()
		}
	}
	log.Debug("prefetched the engine's files", "bytes", total, "took", time.Since(start).Round(time.Millisecond))
	return total
}
