package gui

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/host/store"
)

// Autostart is how the OS starts the tray at login: an XDG autostart .desktop file on
// Linux, a LaunchAgent plist on macOS, a value under HKCU\...\Run on Windows. It is
// computed by NewAutostart, a pure function, so every OS's entry is tested anywhere.
type Autostart struct {
	GOOS string
	// Path and Content: the file to write (Linux, macOS).
	Path    string
	Content []byte
	// RegistryKey (under HKEY_CURRENT_USER), RegistryValue and Command: the Run value
	// (Windows).
	RegistryKey   string
	RegistryValue string
	Command       string
}

// AppID is the tray's identifier: the fyne app ID and the LaunchAgent label.
const AppID = "dev.berth.tray"

// WindowsRunKey is where per-user login programs are registered.
const WindowsRunKey = `Software\Microsoft\Windows\CurrentVersion\Run`

// NewAutostart computes the login entry that runs exe with args for goos. home is the
// user's home directory; xdgConfigHome is $XDG_CONFIG_HOME (may be empty). The instance
// name keeps entries of several instances apart.
func NewAutostart(goos, home, xdgConfigHome, exe string, args []string, instance string) (Autostart, error) {
	if exe == "" {
		return Autostart{}, errors.New("autostart: no executable")
	}
	suffix := ""
	if instance != "" && instance != store.DefaultName {
		suffix = "-" + instance
	}
	a := Autostart{GOOS: goos}
	switch goos {
	case "windows":
		a.RegistryKey = WindowsRunKey
		a.RegistryValue = "berth-tray" + suffix
		a.Command = windowsCommandLine(append([]string{exe}, args...))
	case "darwin":
		if home == "" {
			return Autostart{}, errors.New("autostart: no home directory")
		}
		label := AppID
		if suffix != "" {
			label += "." + instance
		}
		a.Path = filepath.Join(home, "Library", "LaunchAgents", label+".plist")
		a.Content = launchAgentPlist(label, append([]string{exe}, args...))
	default: // Linux and the BSDs: the XDG autostart spec
		dir := xdgConfigHome
		if dir == "" || !filepath.IsAbs(dir) {
			if home == "" {
				return Autostart{}, errors.New("autostart: no home directory")
			}
			dir = filepath.Join(home, ".config")
		}
		a.Path = filepath.Join(dir, "autostart", "berth-tray"+suffix+".desktop")
		a.Content = desktopEntry(append([]string{exe}, args...), instance)
	}
	return a, nil
}

// desktopEntry renders an XDG autostart entry.
func desktopEntry(argv []string, instance string) []byte {
	var b bytes.Buffer
	b.WriteString("[Desktop Entry]\n")
	b.WriteString("Type=Application\n")
	b.WriteString("Name=berth\n")
	fmt.Fprintf(&b, "Comment=berth tray: start, stop and watch the %s instance\n", instance)
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = desktopQuote(a)
	}
	fmt.Fprintf(&b, "Exec=%s\n", strings.Join(q, " "))
	b.WriteString("Terminal=false\n")
	b.WriteString("X-GNOME-Autostart-enabled=true\n")
	return b.Bytes()
}

// desktopQuote quotes one Exec argument as the Desktop Entry spec asks: arguments with
// reserved characters go in double quotes with ", `, $ and \ backslash-escaped, and
// since string-value unescaping comes first, each of those backslashes is doubled (a
// literal backslash is four); % is doubled (field codes).
func desktopQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\><~|&;$*?#()`") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '`', '$':
			b.WriteString(`\\`) // the quoting escape, itself escaped as a string value
		case '\\':
			b.WriteString(`\\\`) // four in all: the spec's literal backslash
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// launchAgentPlist renders a per-user LaunchAgent that runs argv at login, once (no
// KeepAlive: quitting the tray must keep it quit).
func launchAgentPlist(label string, argv []string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n<dict>\n")
	fmt.Fprintf(&b, "\t<key>Label</key>\n\t<string>%s</string>\n", xmlEscape(label))
	b.WriteString("\t<key>ProgramArguments</key>\n\t<array>\n")
	for _, a := range argv {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlEscape(a))
	}
	b.WriteString("\t</array>\n")
	b.WriteString("\t<key>RunAtLoad</key>\n\t<true/>\n")
	b.WriteString("\t<key>KeepAlive</key>\n\t<false/>\n")
	b.WriteString("\t<key>ProcessType</key>\n\t<string>Interactive</string>\n")
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes()
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;").Replace(s)
}

// windowsCommandLine joins argv the way CommandLineToArgvW splits it.
func windowsCommandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = windowsQuote(a)
	}
	return strings.Join(q, " ")
}

func windowsQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\v\"") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for _, r := range s {
		switch r {
		case '\\':
			slashes++
		case '"':
			// Backslashes before a quote are doubled, and the quote escaped.
			b.WriteString(strings.Repeat(`\`, slashes+1))
			slashes = 0
		default:
			slashes = 0
		}
		b.WriteRune(r)
	}
	// Backslashes before the closing quote are doubled.
	b.WriteString(strings.Repeat(`\`, slashes))
	b.WriteByte('"')
	return b.String()
}

// Enable installs the entry.
func (a Autostart) Enable() error {
	if a.GOOS == "windows" {
		return setRunValue(a.RegistryKey, a.RegistryValue, a.Command)
	}
	if err := os.MkdirAll(filepath.Dir(a.Path), 0o755); err != nil {
		return fmt.Errorf("failed to enable start at login: %w", err)
	}
	if err := store.WriteFileAtomic(a.Path, a.Content, 0o644); err != nil {
		return fmt.Errorf("failed to enable start at login: %w", err)
	}
	return nil
}

// Disable removes the entry; a missing one is no error.
func (a Autostart) Disable() error {
	if a.GOOS == "windows" {
		return deleteRunValue(a.RegistryKey, a.RegistryValue)
	}
	if err := os.Remove(a.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to disable start at login: %w", err)
	}
	return nil
}

// Enabled reports whether the entry is installed.
func (a Autostart) Enabled() bool {
	if a.GOOS == "windows" {
		v, err := getRunValue(a.RegistryKey, a.RegistryValue)
		return err == nil && v != ""
	}
	_, err := os.Stat(a.Path)
	return err == nil
}

// Set enables or disables the entry.
func (a Autostart) Set(on bool) error {
	if on {
		return a.Enable()
	}
	return a.Disable()
}

// CurrentAutostart is the entry for this OS and this tray executable.
func CurrentAutostart(goos string, args []string, instance string) (Autostart, error) {
	exe, err := os.Executable()
	if err != nil {
		return Autostart{}, err
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	home, _ := os.UserHomeDir()
	return NewAutostart(goos, home, os.Getenv("XDG_CONFIG_HOME"), exe, args, instance)
}
