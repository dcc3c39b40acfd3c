//go:build linux

package guestagent

import (
	"testing"
	"time"
)

func TestParseUptime(t *testing.T) {
	got, err := parseUptime("12.34 56.78\n")
	if err != nil || got != 12340*time.Millisecond {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"", "abc 1"} {
		if _, err := parseUptime(bad); err == nil {
			t.Errorf("parseUptime(%q) accepted", bad)
		}
	}
}
