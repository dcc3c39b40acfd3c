package vm

import (
	"log/slog"
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	saved := drivers
	t.Cleanup(func() { drivers = saved })
	drivers = nil
	if _, err := Choose(Config{Arch: "amd64"}); err == nil {
		t.Fatal("Choose with no driver succeeded")
	}
	reg := func(name string, prio int, handles func(Config) bool) {
		Register(Registration{Name: name, Priority: prio, Handles: handles,
			Caps: Caps{ShareDevice: func(Share) string { return Share9P }},
			New:  func(Config, *slog.Logger) (Driver, error) { return nil, nil }})
	}
	reg("any", 0, func(Config) bool { return true })
	reg("native", 10, func(c Config) bool { return c.Accel == "" })
	for accel, want := range map[string]string{"": "native", "tcg": "any"} {
		if r, err := Choose(Config{Arch: "amd64", Accel: accel}); err != nil || r.Name != want {
			t.Errorf("accel %q: %q, %v; want %q", accel, r.Name, err, want)
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "twice") {
				t.Errorf("second registration of a name: %v", r)
			}
		}()
		reg("any", 5, func(Config) bool { return true })
	}()
	drivers = nil
	reg("native", 10, func(c Config) bool { return c.Accel == "" })
	if _, err := Choose(Config{Arch: "arm64", Accel: "tcg"}); err == nil || !strings.Contains(err.Error(), "native") {
		t.Errorf("no driver handles it: %v (want the drivers named)", err)
	}
}
