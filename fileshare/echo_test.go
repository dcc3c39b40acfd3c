package fileshare

import (
	"reflect"
	"testing"
	"time"
)

func TestEchoFilter(t *testing.T) {
	now := time.Unix(1000, 0)
	f := NewEchoFilter(2 * time.Second)
	f.now = func() time.Time { return now }
	in := []Event{{Path: "/s/a", Op: "write"}, {Path: "/s/b", Op: "remove"}}
	if got := f.Filter(append([]Event(nil), in...)); !reflect.DeepEqual(got, in) {
		t.Fatalf("first batch: %v", got)
	}
	// The echoes of both replays (the file, and the removed file's directory) are dropped once.
	if got := f.Filter([]Event{{Path: "/s/a", Op: "write"}, {Path: "/s", Op: "write"}}); len(got) != 0 {
		t.Errorf("echoes passed: %v", got)
	}
	// A real change after that passes.
	if got := f.Filter([]Event{{Path: "/s/a", Op: "write"}}); len(got) != 1 {
		t.Errorf("real change dropped: %v", got)
	}
	// An echo that never came expires.
	now = now.Add(3 * time.Second)
	if got := f.Filter([]Event{{Path: "/s/a", Op: "write"}}); len(got) != 1 {
		t.Errorf("change after expiry dropped: %v", got)
	}
	// Creations are never taken for echoes.
	if got := f.Filter([]Event{{Path: "/s/a", Op: "create"}}); len(got) != 1 {
		t.Errorf("create dropped: %v", got)
	}
}
