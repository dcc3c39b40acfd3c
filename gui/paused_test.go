package gui

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/api"
)

// TestPausedSnapshot: a paused instance shows as up (running icon, its containers kept)
// with a headline that says it is paused, not stopped.
func TestPausedSnapshot(t *testing.T) {
	s := Snapshot{Instance: "default", State: api.StatePaused}
	if s.Look() != LookRunning {
		t.Errorf("Look = %v, want LookRunning", s.Look())
	}
	if h := s.Headline(); !strings.Contains(h, "paused") {
		t.Errorf("Headline = %q, want it to say paused", h)
	}
	if !s.Up() {
		t.Error("a paused instance is not Up: the tray would offer Start")
	}
}
