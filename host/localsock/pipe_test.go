package localsock

import (
	"strings"
	"testing"
)

func TestPipeHelpers(t *testing.T) {
	for in, want := range map[string]string{
		"berth-default":             `\\.\pipe\berth-default`,
		`\\.\pipe\berth-default`:    `\\.\pipe\berth-default`,
		"//./pipe/docker_engine":    `\\.\pipe\docker_engine`,
		"berth.docker-sock_1":       `\\.\pipe\berth.docker-sock_1`,
		"":                          "",
		`..\x`:                      "",
		`a\b`:                       "",
		`\\server\pipe\berth`:       "",
		"has space":                 "",
		strings.Repeat("x", 300):    "",
		`\\.\pipe\`:                 "",
		`\\.\pipe\nested\component`: "",
	} {
		got, err := PipePath(in)
		if want == "" {
			if err == nil {
				t.Errorf("PipePath(%q) = %q, want error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("PipePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got := DockerHost(`\\.\pipe\berth-default`); got != "npipe:////./pipe/berth-default" {
		t.Errorf("DockerHost = %q", got)
	}
	sddl, err := UserOnlySDDL("S-1-5-21-1004336348-1177238915-682003330-1001")
	if err != nil || sddl != "D:P(A;;GA;;;S-1-5-21-1004336348-1177238915-682003330-1001)" {
		t.Errorf("sddl %q %v", sddl, err)
	}
	for _, bad := range []string{"", "BA", "S-1-5-21)(A;;GA;;;WD", "S-1"} {
		if _, err := UserOnlySDDL(bad); err == nil {
			t.Errorf("UserOnlySDDL(%q) accepted", bad)
		}
	}
}
