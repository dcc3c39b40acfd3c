package store

import (
	"strings"
	"testing"
	"time"
)

func TestIdlePauseAfter(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
		err  string
	}{
		{"", time.Duration(DefaultPauseAfter), ""},
		{"cpus: 1\n", time.Duration(DefaultPauseAfter), ""},
		{"idle:\n  pauseAfter: 20s\n", 20 * time.Second, ""},
		{"idle:\n  pauseAfter: 1h\n", time.Hour, ""},
		{"idle:\n  pauseAfter: 0\n", 0, ""},
		{"idle:\n  pauseAfter: 300\n", 0, "not a duration"},
		{"idle:\n  pauseAfter: soon\n", 0, "not a duration"},
		{"idle:\n  pauseAfter: 10ms\n", 0, "out of range"},
		{"idle:\n  pauseAfter: -5m\n", 0, "out of range"},
		{"idle:\n  pauseafter: 5m\n", 0, "not found"},
	} {
		c, err := ParseConfig([]byte(tc.yaml))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want one containing %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if got := time.Duration(c.Idle.PauseAfter); got != tc.want {
			t.Errorf("%q: pauseAfter = %s, want %s", tc.yaml, got, tc.want)
		}
	}
	// A set value survives a write and a read (berth.yaml is written by berth start).
	c := DefaultConfig()
	c.Idle.PauseAfter = Duration(90 * time.Second)
	back, err := ParseConfig(c.Marshal())
	if err != nil || back.Idle.PauseAfter != c.Idle.PauseAfter {
		t.Fatalf("round trip: %v, pauseAfter %s\n%s", err, time.Duration(back.Idle.PauseAfter), c.Marshal())
	}
}
