package guestagent

import (
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

func TestPlanClock(t *testing.T) {
	host := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC).UnixNano()
	for _, tc := range []struct {
		off    time.Duration // guest minus host
		action string
		set    bool
	}{
		{0, proto.ClockNone, false},
		{time.Millisecond, proto.ClockNone, false},
		{-time.Millisecond, proto.ClockNone, false},
		{30 * time.Millisecond, proto.ClockSlew, false},
		{-99 * time.Millisecond, proto.ClockSlew, false},
		{100 * time.Millisecond, proto.ClockStep, false},
		{-300 * time.Millisecond, proto.ClockStep, false},
		{500 * time.Millisecond, proto.ClockStep, true},
		{-90 * time.Second, proto.ClockStep, true}, // a VM paused for 90 s
	} {
		p := planClock(host+int64(tc.off), host)
		if p.offset != tc.off || p.action != tc.action || p.set != tc.set {
			t.Errorf("offset %s: got %+v, want %s set=%v", tc.off, p, tc.action, tc.set)
		}
	}
}

func TestSplitNanos(t *testing.T) {
	for _, tc := range []struct{ n, sec, nsec int64 }{
		{0, 0, 0},
		{1_500_000_000, 1, 500_000_000},
		{-1, -1, 999_999_999},
		{-250_000_000, -1, 750_000_000},
		{-2_000_000_000, -2, 0},
	} {
		sec, nsec := splitNanos(tc.n)
		if sec != tc.sec || nsec != tc.nsec {
			t.Errorf("splitNanos(%d) = %d, %d; want %d, %d", tc.n, sec, nsec, tc.sec, tc.nsec)
		}
		if sec*1e9+nsec != tc.n || nsec < 0 || nsec >= 1e9 {
			t.Errorf("splitNanos(%d) = %d, %d does not add up", tc.n, sec, nsec)
		}
	}
}
