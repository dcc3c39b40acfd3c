//go:build !windows

package gui

import (
	"strings"
	"testing"
)

func TestClipboardCommands(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	got := func(goos string, m map[string]string) string {
		var out []string
		for _, c := range clipboardCommands(goos, env(m)) {
			out = append(out, c[0])
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"darwin", nil, "pbcopy"},
		{"linux", map[string]string{"DISPLAY": ":0"}, "xclip xsel"},
		{"linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "wl-copy xclip xsel"},
		{"freebsd", nil, ""},
	} {
		if g := got(c.goos, c.env); g != c.want {
			t.Errorf("%s %v: %q, want %q", c.goos, c.env, g, c.want)
		}
	}
}
