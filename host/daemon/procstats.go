package daemon

import (
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/host/api"
)

// selfStats measures hostd itself. File descriptors and resident memory come from /proc
// and stay zero where there is none.
func selfStats() *api.Process {
	p := &api.Process{Goroutines: runtime.NumGoroutine()}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.FDs = len(fds)
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				p.RSSBytes = pages * uint64(os.Getpagesize())
			}
		}
	}
	return p
}
