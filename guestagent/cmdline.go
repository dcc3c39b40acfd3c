package guestagent

import (
	"fmt"
	"os"
	"strings"
)

// Cmdline is the kernel command line as key → value; a bare word maps to "".
type Cmdline map[string]string

// ParseCmdline splits a kernel command line (the contents of /proc/cmdline). Double
// quotes group words the way the kernel does (`key="a b"`); a later duplicate wins, as
// for the kernel's own parameters.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	// Byte by byte: every delimiter is ASCII, and a value that is no valid UTF-8 must come
	// back as it was, not with U+FFFD in it.
	for i := 0; i < len(s); i++ {
		r := s[i]
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		c[k] = v
	}
	return c
}

// Flag reports whether a boolean parameter is on: present bare, or set to 1/y/yes/true/on.
func (c Cmdline) Flag(name string) bool {
	v, ok := c[name]
	if !ok {
		return false
	}
	switch strings.ToLower(v) {
	case "", "1", "y", "yes", "true", "on":
		return true
	}
	return false
}

// Kernel command line parameters the agent understands.
const (
	// CmdlineBare powers the guest off right after /proc is mounted: the boot benchmark
	// times a bare kernel boot with the same kernel and initramfs.
	CmdlineBare = "berth.bare"
	// BareIdle as CmdlineBare's value (berth.bare=idle) keeps the bare guest up, idle,
	// instead of powering it off: the idle benchmark's baseline for the VM's idle CPU.
	BareIdle = "idle"
	// BareIdleTuned (berth.bare=idle-tuned) is BareIdle with the kernel tuned as berth's
	// boot tunes it (quietSysctls): the baseline for what the guest's services alone cost.
	BareIdleTuned = "idle-tuned"
	// CmdlineDebug turns on debug logging; PID 1 passes it to the serve process as
	// BERTH_DEBUG=1.
	CmdlineDebug = "berth.debug"
	// CmdlineTime is the host's clock (Unix seconds) when it built the command line. A guest
	// without a usable RTC (vz) starts in 1970; moving the clock forward to this early
	// keeps e2fsck and TLS sane until the host sets the exact time over the agent channel.
	CmdlineTime = "berth.time"
)

// ReadCmdline reads /proc/cmdline.
func ReadCmdline() (Cmdline, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("failed to read the kernel command line: %w", err)
	}
	return ParseCmdline(string(b)), nil
}
