package gui

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

func TestMenuAndLook(t *testing.T) {
	tests := []struct {
		name     string
		s        Snapshot
		look     Look
		headline string
		on       []string // enabled items besides the always-enabled ones
	}{
		{"stopped", Snapshot{State: api.StateStopped}, LookStopped, "default: stopped", []string{ItemStart}},
		{"last run failed", Snapshot{State: api.StateStopped, Error: "last run failed: boom"}, LookError, "default: stopped (last run failed)", []string{ItemStart}},
		{"start failed", Snapshot{State: api.StateStopped, ActionError: "no image"}, LookError, "default: stopped (start failed)", []string{ItemStart}},
		{"tray starting", Snapshot{State: api.StateStopped, Busy: BusyStarting}, LookStarting, "default: starting…", nil},
		{"starting", Snapshot{State: api.StateStarting, Phase: api.PhaseEngine, Daemon: true}, LookStarting, "default: starting (engine)…", []string{ItemStop}},
		{"running", Snapshot{State: api.StateRunning, Daemon: true}, LookRunning, "default: running", []string{ItemStop, ItemRestart, ItemShell}},
		{"degraded", Snapshot{State: api.StateDegraded, Daemon: true}, LookDegraded, "default: degraded (Docker engine restarting)", []string{ItemStop, ItemRestart, ItemShell}},
		{"stopping", Snapshot{State: api.StateStopping, Daemon: true}, LookStarting, "default: stopping…", nil},
		{"tray stopping", Snapshot{State: api.StateRunning, Daemon: true, Busy: BusyStopping}, LookRunning, "default: stopping…", []string{ItemShell}},
		{"restarting", Snapshot{State: api.StateRunning, Daemon: true, Busy: BusyRestarting}, LookStarting, "default: restarting…", []string{ItemShell}},
		{"error with daemon", Snapshot{State: api.StateError, Daemon: true, Error: "x"}, LookError, "default: error", []string{ItemStop, ItemRestart}},
	}
	always := []string{ItemContainers, ItemCopyContext, ItemPreferences, ItemLogs, ItemQuit}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.s.Instance, tt.s.Context = "default", "berth"
			if got := tt.s.Look(); got != tt.look {
				t.Errorf("look = %v, want %v", got, tt.look)
			}
			if got := tt.s.Headline(); got != tt.headline {
				t.Errorf("headline = %q, want %q", got, tt.headline)
			}
			var on []string
			for _, it := range Menu(tt.s) {
				if it.Enabled && !slices.Contains(always, it.ID) {
					on = append(on, it.ID)
				}
				if slices.Contains(always, it.ID) && !it.Enabled {
					t.Errorf("%s disabled", it.ID)
				}
			}
			if !slices.Equal(on, tt.on) {
				t.Errorf("enabled %q, want %q", on, tt.on)
			}
		})
	}
	m := Menu(Snapshot{Instance: "dev", Context: "berth-dev"})
	if m[0].Label != "dev: stopped" || m[len(m)-1].ID != ItemQuit || !strings.Contains(m[8].Label, "docker context use berth-dev") {
		t.Errorf("menu %+v", m)
	}
}

func TestDiskWarning(t *testing.T) {
	st := api.Status{}
	if diskWarning(st) != "" {
		t.Error("warning without guest info")
	}
	st.Guest = &api.Guest{DataDisk: api.DiskUsage{Used: 90, Total: 100}}
	if diskWarning(st) != "" {
		t.Error("warning at 90%")
	}
	st.Guest.DataDisk.Used = 91
	if w := diskWarning(st); !strings.HasPrefix(w, "91% of") {
		t.Errorf("warning %q", w)
	}

	// Re-arming: only below 85%, and only with a known usage.
	for used, want := range map[uint64]bool{91: false, 86: false, 85: false, 84: true, 0: true} {
		st.Guest.DataDisk.Used = used
		if got := diskRearmed(st); got != want {
			t.Errorf("diskRearmed at %d%% = %v, want %v", used, got, want)
		}
	}
	if diskRearmed(api.Status{}) || diskRearmed(api.Status{Guest: &api.Guest{}}) {
		t.Error("re-armed without a known usage")
	}
}

func TestPrefsForm(t *testing.T) {
	dir := t.TempDir()
	src, data, file := filepath.Join(dir, "src"), filepath.Join(dir, "data"), filepath.Join(dir, "file")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.MkdirAll(data, 0o755)
	os.WriteFile(file, nil, 0o644)
	// Settings the form does not show are not the defaults, to see that they are kept.
	cur := store.DefaultConfig()
	cur.Disk, cur.Arch, cur.Accel, cur.Images, cur.BootTimeout, cur.PortListeners = 64, "arm64", "tcg", "/x/images", 90, "all"
	cur.Shares = []fileshare.Share{{Path: src, NoNotify: true}}
	tests := []struct {
		name    string
		edit    func(f *PrefsForm)
		wantErr string
		check   func(c store.Config) bool
	}{
		{"unchanged", func(f *PrefsForm) {}, "", func(c store.Config) bool { return c.Disk == 64 }},
		{"more of everything", func(f *PrefsForm) { f.CPUs, f.Memory, f.Disk, f.PortBindAddress = "4", " 8 ", "128", "0.0.0.0" },
			"", func(c store.Config) bool {
				return c.CPUs == 4 && c.Memory == 8 && c.Disk == 128 && c.PortBindAddress == "0.0.0.0"
			}},
		{"shrink disk", func(f *PrefsForm) { f.Disk = "32" }, "can only grow", nil},
		{"not a number", func(f *PrefsForm) { f.CPUs = "two" }, `cpus: "two" is not a whole number`, nil},
		{"out of range", func(f *PrefsForm) { f.CPUs = "0" }, "cpus: 0 is out of range", nil},
		{"memory out of range", func(f *PrefsForm) { f.Memory = "2048" }, "memory: 2048 GiB is out of range", nil},
		{"bind address", func(f *PrefsForm) { f.PortBindAddress = "192.168.1.1" }, "portBindAddress", nil},
		{"add a share", func(f *PrefsForm) { f.Shares = append(f.Shares, fileshare.Share{Path: data, ReadOnly: true}) },
			"", func(c store.Config) bool {
				return slices.Equal(c.Shares, []fileshare.Share{{Path: src, NoNotify: true}, {Path: data, ReadOnly: true}})
			}},
		{"share nothing", func(f *PrefsForm) { f.Shares = nil }, "", func(c store.Config) bool { return len(c.Shares) == 0 }},
		{"overlapping shares", func(f *PrefsForm) { f.Shares = append(f.Shares, fileshare.Share{Path: src + "/sub"}) },
			`shares "` + src + `" and "` + src + `/sub" overlap`, nil},
		{"listed twice", func(f *PrefsForm) { f.Shares = append(f.Shares, fileshare.Share{Path: src + "/"}) }, "listed twice", nil},
		{"missing share", func(f *PrefsForm) { f.Shares = []fileshare.Share{{Path: dir + "/nope"}} }, `share "` + dir + `/nope": `, nil},
		{"file share", func(f *PrefsForm) { f.Shares = []fileshare.Share{{Path: file}} }, `share "` + file + `": not a directory`, nil},
		{"system directory", func(f *PrefsForm) { f.Shares = []fileshare.Share{{Path: "/etc"}} }, `share "/etc": a system directory`, nil},
		{"relative share", func(f *PrefsForm) { f.Shares = []fileshare.Share{{Path: "src"}} }, `share "src": not an absolute path`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewPrefsForm(cur, false, false)
			tt.edit(&f)
			got, err := f.Apply(cur)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("config %+v", got)
			}
			want := cur
			want.CPUs, want.Memory, want.Disk, want.PortBindAddress, want.Shares = got.CPUs, got.Memory, got.Disk, got.PortBindAddress, got.Shares
			if !reflect.DeepEqual(got, want) {
				t.Errorf("settings the form does not show changed: %+v, want %+v", got, want)
			}
		})
	}

	// Shares that did not change are left to the start to check: a share on an unplugged
	// disk does not block the other settings.
	gone := cur
	gone.Shares = []fileshare.Share{{Path: dir + "/unplugged"}}
	f := NewPrefsForm(gone, false, false)
	f.CPUs = "1"
	if got, err := f.Apply(gone); err != nil || got.CPUs != 1 {
		t.Errorf("unchanged missing share: %+v, %v", got, err)
	}
	// The form has its own copy of the shares.
	f.Shares[0].ReadOnly = true
	if gone.Shares[0].ReadOnly {
		t.Error("the form edits the config's shares")
	}

	a := store.DefaultConfig()
	b := a
	b.PortBindAddress = "0.0.0.0"
	c := a
	c.Shares = []fileshare.Share{{Path: src, ReadOnly: true}}
	d := c
	d.Shares = []fileshare.Share{{Path: src}}
	if NeedsRestart(a, a) || !NeedsRestart(a, b) || !NeedsRestart(a, c) || !NeedsRestart(c, d) || NeedsRestart(c, c) {
		t.Error("NeedsRestart")
	}
}

func TestControllerSavePrefs(t *testing.T) {
	inst := newTestInstance(t)
	c, err := NewController(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := c.Config()
	f := NewPrefsForm(cfg, false, false)
	f.CPUs, f.Disk = "3", "100"
	restart, err := c.SavePrefs(f)
	if err != nil || restart {
		t.Fatalf("save while stopped: restart %v, %v", restart, err)
	}
	got, _ := inst.Config()
	if got.CPUs != 3 || got.Disk != 100 {
		t.Errorf("saved %+v", got)
	}
	f.Disk = "50"
	if _, err := c.SavePrefs(f); err == nil {
		t.Error("shrinking the disk was saved")
	}

	// Running: a change needs a restart; no change does not.
	lock, err := inst.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	f.Disk = "100"
	if restart, err := c.SavePrefs(f); err != nil || restart {
		t.Errorf("unchanged while running: restart %v, %v", restart, err)
	}
	f.Memory = "4"
	if restart, err := c.SavePrefs(f); err != nil || !restart {
		t.Errorf("changed while running: restart %v, %v", restart, err)
	}
	f.Shares = append(f.Shares, fileshare.Share{Path: t.TempDir(), ReadOnly: true})
	if restart, err := c.SavePrefs(f); err != nil || !restart {
		t.Errorf("shares changed while running: restart %v, %v", restart, err)
	}
	if got, _ := inst.Config(); !slices.Equal(got.Shares, f.Shares) {
		t.Errorf("saved shares %+v, want %+v", got.Shares, f.Shares)
	}
}

func TestSavePrefsCreatesTheInstance(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BERTH_HOME", home)
	c, err := NewController(Options{Instance: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Config()
	if err != nil || cfg.CPUs != store.DefaultConfig().CPUs {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	f := NewPrefsForm(cfg, false, false)
	f.Memory = "3"
	if _, err := c.SavePrefs(f); err != nil {
		t.Fatal(err)
	}
	inst, err := store.Open("fresh")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := inst.Config(); got.Memory != 3 {
		t.Errorf("config %+v", got)
	}
}

func TestAutostartEntries(t *testing.T) {
	t.Run("linux", func(t *testing.T) {
		a, err := NewAutostart("linux", "/home/ann", "", "/opt/berth/berth-tray", []string{"--instance", "default"}, "default")
		if err != nil {
			t.Fatal(err)
		}
		if a.Path != "/home/ann/.config/autostart/berth-tray.desktop" {
			t.Errorf("path %s", a.Path)
		}
		want := "[Desktop Entry]\nType=Application\nName=berth\nComment=berth tray: start, stop and watch the default instance\n" +
			"Exec=/opt/berth/berth-tray --instance default\nTerminal=false\nX-GNOME-Autostart-enabled=true\n"
		if string(a.Content) != want {
			t.Errorf("content:\n%s\nwant:\n%s", a.Content, want)
		}
		a, _ = NewAutostart("linux", "/home/ann", "/xdg", "/opt/My Apps/berth-tray", []string{"--instance", "dev", "--berth", `/a"b$c\d%e`}, "dev")
		if a.Path != "/xdg/autostart/berth-tray-dev.desktop" {
			t.Errorf("path %s", a.Path)
		}
		if !strings.Contains(string(a.Content), `Exec="/opt/My Apps/berth-tray" --instance dev --berth "/a\\"b\\$c\\\\d%%e"`+"\n") {
			t.Errorf("quoting:\n%s", a.Content)
		}
		// A relative XDG_CONFIG_HOME is invalid per the spec and ignored.
		a, _ = NewAutostart("freebsd", "/home/ann", "rel", "/x", nil, "")
		if a.Path != "/home/ann/.config/autostart/berth-tray.desktop" {
			t.Errorf("path %s", a.Path)
		}
	})
	t.Run("darwin", func(t *testing.T) {
		a, err := NewAutostart("darwin", "/Users/ann", "", "/Applications/berth.app/Contents/MacOS/berth-tray", []string{"--instance", "a&b"}, "a&b")
		if err != nil {
			t.Fatal(err)
		}
		if a.Path != "/Users/ann/Library/LaunchAgents/dev.berth.tray.a&b.plist" {
			t.Errorf("path %s", a.Path)
		}
		for _, want := range []string{
			"<key>Label</key>\n\t<string>dev.berth.tray.a&amp;b</string>",
			"<array>\n\t\t<string>/Applications/berth.app/Contents/MacOS/berth-tray</string>\n\t\t<string>--instance</string>\n\t\t<string>a&amp;b</string>\n\t</array>",
			"<key>RunAtLoad</key>\n\t<true/>", "<key>KeepAlive</key>\n\t<false/>",
		} {
			if !strings.Contains(string(a.Content), want) {
				t.Errorf("plist lacks %q:\n%s", want, a.Content)
			}
		}
		if !strings.HasPrefix(string(a.Content), `<?xml version="1.0" encoding="UTF-8"?>`) {
			t.Error("no XML declaration")
		}
	})
	t.Run("windows", func(t *testing.T) {
		a, err := NewAutostart("windows", `C:\Users\ann`, "", `C:\Program Files\berth\berth-tray.exe`, []string{"--instance", "default", "--berth", `C:\dir with space\`}, "default")
		if err != nil {
			t.Fatal(err)
		}
		if a.RegistryKey != `Software\Microsoft\Windows\CurrentVersion\Run` || a.RegistryValue != "berth-tray" || a.Path != "" {
			t.Errorf("entry %+v", a)
		}
		want := `"C:\Program Files\berth\berth-tray.exe" --instance default --berth "C:\dir with space\\"`
		if a.Command != want {
			t.Errorf("command %s, want %s", a.Command, want)
		}
		if got := windowsQuote(`say "hi"`); got != `"say \"hi\""` {
			t.Errorf("quote %s", got)
		}
	})
	if _, err := NewAutostart("linux", "", "", "/x", nil, ""); err == nil {
		t.Error("no home accepted")
	}
}

func TestAutostartEnableDisable(t *testing.T) {
	home := t.TempDir()
	a, err := NewAutostart("linux", home, "", "/usr/bin/berth-tray", nil, "default")
	if err != nil {
		t.Fatal(err)
	}
	if a.Enabled() {
		t.Fatal("enabled before")
	}
	if err := a.Set(true); err != nil || !a.Enabled() {
		t.Fatalf("enable: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(home, ".config", "autostart", "berth-tray.desktop"))
	if !bytes.Equal(b, a.Content) {
		t.Error("file content")
	}
	if err := a.Set(false); err != nil || a.Enabled() {
		t.Fatalf("disable: %v", err)
	}
	if err := a.Disable(); err != nil {
		t.Errorf("second disable: %v", err)
	}
}

func TestShellCommand(t *testing.T) {
	found := func(names ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			if slices.Contains(names, n) {
				return "/usr/bin/" + n, nil
			}
			return "", errors.New("not found")
		}
	}
	noenv := func(string) string { return "" }
	tests := []struct {
		goos   string
		look   func(string) (string, error)
		getenv func(string) string
		want   string
	}{
		{"linux", found("x-terminal-emulator", "xterm"), noenv, "/usr/bin/x-terminal-emulator -e /opt/berth shell default"},
		{"linux", found("gnome-terminal", "xterm"), noenv, "/usr/bin/gnome-terminal -- /opt/berth shell default"},
		{"linux", found("xterm"), noenv, "/usr/bin/xterm -e /opt/berth shell default"},
		{"linux", found("foot", "xterm"), func(k string) string { return map[string]string{"TERMINAL": "foot"}[k] }, "/usr/bin/foot -e /opt/berth shell default"},
		{"darwin", found(), noenv, `osascript -e tell application "Terminal" to do script "/opt/berth shell default" -e tell application "Terminal" to activate`},
		{"windows", found("wt.exe"), noenv, "/usr/bin/wt.exe new-tab --title berth default /opt/berth shell default"},
		{"windows", found(), noenv, "cmd.exe /c start berth default /opt/berth shell default"},
	}
	for _, tt := range tests {
		got, err := ShellCommand(tt.goos, "/opt/berth", "default", tt.look, tt.getenv)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.goos, got, err, tt.want)
		}
	}
	got, _ := ShellCommand("darwin", "/Applications/My berth/berth", `it's`, found(), noenv)
	if want := `tell application "Terminal" to do script "'/Applications/My berth/berth' shell 'it'\\''s'"`; got[2] != want {
		t.Errorf("darwin quoting: %s\nwant %s", got[2], want)
	}
	if _, err := ShellCommand("linux", "berth", "default", found(), noenv); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Errorf("no terminal: %v", err)
	}
}

func TestIcons(t *testing.T) {
	seen := map[string]Look{}
	for l := LookStopped; l <= LookError; l++ {
		b := IconPNG(l)
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%v: %v", l, err)
		}
		if img.Bounds().Dx() != IconSize {
			t.Errorf("%v: size %v", l, img.Bounds())
		}
		if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
			t.Errorf("%v: corner not transparent", l)
		}
		if _, _, _, a := img.At(IconSize/2, IconSize*3/4).RGBA(); a == 0 {
			t.Errorf("%v: box not drawn", l)
		}
		if prev, dup := seen[string(b)]; dup {
			t.Errorf("%v looks like %v", l, prev)
		}
		seen[string(b)] = l
	}
}

func TestEngineParsing(t *testing.T) {
	var frames []byte
	for _, s := range []string{"a\n", "bc\n"} {
		h := make([]byte, 8)
		h[0] = 1
		binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
		frames = append(append(frames, h...), s...)
	}
	if got := demux(frames); got != "a\nbc\n" {
		t.Errorf("demux = %q", got)
	}
	if got := demux([]byte("raw tty output\n")); got != "raw tty output\n" {
		t.Errorf("raw = %q", got)
	}
	ports := []struct {
		p     Port
		label string
		url   string
	}{
		{Port{HostIP: "0.0.0.0", HostPort: 8080, Container: 80, Proto: "tcp"}, "localhost:8080", "http://localhost:8080/"},
		{Port{HostIP: "127.0.0.1", HostPort: 8443, Container: 443, Proto: "tcp"}, "localhost:8443", "https://localhost:8443/"},
		{Port{HostIP: "192.168.1.5", HostPort: 80, Container: 80, Proto: "tcp"}, "192.168.1.5:80", "http://192.168.1.5:80/"},
		{Port{HostIP: "::", HostPort: 53, Container: 53, Proto: "udp"}, "localhost:53/udp", ""},
	}
	for _, tt := range ports {
		u := ""
		if x := tt.p.URL(); x != nil {
			u = x.String()
		}
		if tt.p.Label() != tt.label || u != tt.url {
			t.Errorf("%+v: %s %s", tt.p, tt.p.Label(), u)
		}
	}
}
