package install

import (
	"fmt"
	"strings"
)

// Start-at-login entries. Each is a pure function of the installed binary's path, so the
// contents are tested on any OS; the writes that need the OS are in login_<goos>.go.
const (
	// SystemdUnitName is the systemd --user unit (Linux).
	SystemdUnitName = "berth.service"
	// LaunchdLabel names the launchd agent (macOS); its plist is
	// ~/Library/LaunchAgents/<label>.plist.
	LaunchdLabel = "dev.berth.berth"
	// RunKey and RunValue are the per-user startup entry on Windows.
	RunKey   = `Software\Microsoft\Windows\CurrentVersion\Run`
	RunValue = "Berth"
)

// SystemdUnit is ~/.config/systemd/user/berth.service. `berth start` returns once the
// instance runs and leaves the host daemon behind (detached), so the unit is a oneshot that
// stays "active" after its start command exits; stopping it runs `berth stop`. Starts can be
// slow (TCG, first boot formats the data disk), hence the long start timeout.
func SystemdUnit(bin string) string {
	q := systemdQuote(bin)
	return `[Unit]
Description=berth: the Docker engine in a Linux VM (default instance)
Documentation=https://github.com/berth-dev/berth/blob/main/docs/install.md

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + q + ` start
ExecStop=` + q + ` stop
TimeoutStartSec=15min
TimeoutStopSec=3min

[Install]
WantedBy=default.target
`
}

// systemdQuote quotes a path for an Exec line when it needs it (spaces, quotes, $, %).
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// LaunchdPlist is ~/Library/LaunchAgents/dev.berth.berth.plist: run `berth start` once at
// login. AbandonProcessGroup keeps launchd from killing what `berth start` leaves running
// when it exits (the host daemon detaches into its own session anyway); KeepAlive is off
// because a start that fails should not loop. Output goes to logPath.
func LaunchdPlist(bin, logPath string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + LaunchdLabel + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + xmlEscape(bin) + `</string>
		<string>start</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<false/>
	<key>AbandonProcessGroup</key>
	<true/>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>StandardOutPath</key>
	<string>` + xmlEscape(logPath) + `</string>
	<key>StandardErrorPath</key>
	<string>` + xmlEscape(logPath) + `</string>
</dict>
</plist>
`
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// WindowsRunCommand is the HKCU\...\Run value's data: the quoted binary and `start`.
func WindowsRunCommand(bin string) string {
	return fmt.Sprintf(`"%s" start`, bin)
}
