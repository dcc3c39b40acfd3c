package store

import "testing"

func TestValidName(t *testing.T) {
	for _, n := range []string{"default", "a", "dev-2", "x1234567890123456789012345678901"[:31]} {
		if err := ValidName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", "Default", "-a", "a_b", "../x", "a/b", "x12345678901234567890123456789012"} {
		if ValidName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
}
