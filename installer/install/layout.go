// Package install puts berth on a user's machine and takes it off again: the binaries in a
// user prefix, the guest image in ~/.berth/_images, shell completions, the docker context,
// start-at-login and (on request) the /var/run/docker.sock link. Everything it writes or
// creates is recorded in ~/.berth/install.json, and Uninstall removes exactly that, so a
// HOME ends as it was before. See docs/install.md.
package install

import (
	"path/filepath"
)

// Layout is where install puts each thing for one OS. Paths are absolute; an empty path
// means "not on this OS".
type Layout struct {
	Prefix string
	BinDir string
	// Completions by shell: bash, zsh, fish.
	Bash, Zsh, Fish string
	// Systemd is the systemd --user unit (Linux); SystemdWants its enablement link.
	Systemd, SystemdWants string
	// Launchd is the launchd agent plist (macOS).
	Launchd string
}

// getenv is os.Getenv, passed in so layouts are computed for any OS and environment.
type getenv func(string) string

// DefaultPrefix is the user prefix: ~/.local on Linux and macOS (bin/ is on the PATH of
// most Linux desktops; macOS users add it), %LOCALAPPDATA%\Programs\Berth on Windows (the
// per-user programs folder, no administrator rights needed).
func DefaultPrefix(goos, home string, env getenv) string {
	if goos == "windows" {
		if d := env("LOCALAPPDATA"); d != "" {
			return filepath.Join(d, "Programs", "Berth")
		}
		return filepath.Join(home, "AppData", "Local", "Programs", "Berth")
	}
	return filepath.Join(home, ".local")
}

// ComputeLayout returns the layout for goos. With the default prefix the completions go to
// the XDG user locations the shells search ($XDG_DATA_HOME, default ~/.local/share, and
// $XDG_CONFIG_HOME, default ~/.config); with an explicit prefix (e.g. /usr/local, as root)
// to the system locations under it.
func ComputeLayout(goos, home, prefix string, env getenv) Layout {
	def := DefaultPrefix(goos, home, env)
	explicit := prefix != "" && filepath.Clean(prefix) != def
	if prefix == "" {
		prefix = def
	}
	prefix = filepath.Clean(prefix)
	l := Layout{Prefix: prefix, BinDir: filepath.Join(prefix, "bin")}
	if goos == "windows" {
		// PowerShell completion lives in the user's profile script, which berth does not
		// edit: `berth completion powershell` prints it (docs/install.md).
		return l
	}
	dataHome := env("XDG_DATA_HOME")
	if dataHome == "" || !filepath.IsAbs(dataHome) {
		dataHome = filepath.Join(home, ".local", "share")
	}
	configHome := env("XDG_CONFIG_HOME")
	if configHome == "" || !filepath.IsAbs(configHome) {
		configHome = filepath.Join(home, ".config")
	}
	if explicit {
		share := filepath.Join(prefix, "share")
		l.Bash = filepath.Join(share, "bash-completion", "completions", "berth")
		l.Zsh = filepath.Join(share, "zsh", "site-functions", "_berth")
		l.Fish = filepath.Join(share, "fish", "vendor_completions.d", "berth.fish")
	} else {
		l.Bash = filepath.Join(dataHome, "bash-completion", "completions", "berth")
		l.Zsh = filepath.Join(dataHome, "zsh", "site-functions", "_berth")
		l.Fish = filepath.Join(configHome, "fish", "completions", "berth.fish")
	}
	switch goos {
	case "linux":
		l.Systemd = filepath.Join(configHome, "systemd", "user", SystemdUnitName)
		l.SystemdWants = filepath.Join(configHome, "systemd", "user", "default.target.wants", SystemdUnitName)
	case "darwin":
		l.Launchd = filepath.Join(home, "Library", "LaunchAgents", LaunchdLabel+".plist")
	}
	return l
}

// ExeName is a binary's file name on goos.
func ExeName(goos, name string) string {
	if goos == "windows" {
		return name + ".exe"
	}
	return name
}
