package gui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
)

// Log names for InstanceLog.
const (
	LogDaemon  = "hostd"   // hostd.log: the host daemon
	LogConsole = "console" // console.log: the guest's serial console
	LogEngine  = "engine"  // dockerd in the guest (control API)
	LogAgent   = "agent"   // berth-agent in the guest (control API)
)

// LogNames lists the logs the logs window offers.
var LogNames = []string{LogDaemon, LogEngine, LogAgent, LogConsole}

// maxLog bounds what the logs window shows: the tail of a log.
const maxLog = 256 << 10

// InstanceLog returns the tail of one of the instance's logs.
func (c *Controller) InstanceLog(ctx context.Context, name string) (string, error) {
	switch name {
	case LogDaemon:
		return tailFile(c.inst.Path(store.HostdLog), maxLog)
	case LogConsole:
		return tailFile(c.inst.Path(store.ConsoleLog), maxLog)
	case LogEngine, LogAgent:
		if c.inst.DaemonPID() == 0 {
			return "", fmt.Errorf("instance %q is not running: the guest logs are read from the running VM", c.inst.Name)
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		rc, err := instance.Client(c.inst).Logs(ctx, name, false)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		return tailReader(rc, maxLog)
	}
	return "", fmt.Errorf("unknown log %q", name)
}

func tailFile(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist yet: the instance has not been started", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	return tailReader(f, n)
}

// tailReader keeps the last n bytes, cut at a line start.
func tailReader(r io.Reader, n int64) (string, error) {
	b, err := io.ReadAll(r)
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	s := string(b)
	if len(b) == int(n) {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s, err
}

// LogPath is the file behind a file-backed log, for "open the folder" style actions.
func (c *Controller) LogPath(name string) string {
	switch name {
	case LogDaemon:
		return c.inst.Path(store.HostdLog)
	case LogConsole:
		return c.inst.Path(store.ConsoleLog)
	}
	return ""
}
