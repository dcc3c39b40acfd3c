package guestagent

import "testing"

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
