package guestagent

import (
	"strings"
	"testing"
)

// dockerdVersion is the shape of dockerd 26.1's GET /version answer (Debian trixie's
// docker.io), as `docker version` reads it.
const dockerdVersion = `{"Platform":{"Name":""},"Components":[
{"Name":"Engine","Version":"26.1.5+dfsg1","Details":{"ApiVersion":"1.45","Arch":"amd64","BuildTime":"2025-06-01T00:00:00.000000000+00:00","Experimental":"false","GitCommit":"411e817","GoVersion":"go1.24.4","KernelVersion":"6.12.118+deb13-amd64","MinAPIVersion":"1.24","Os":"linux"}},
{"Name":"containerd","Version":"1.7.24~ds1","Details":{"GitCommit":"1.7.24~ds1-6+deb13u1"}},
{"Name":"runc","Version":"1.1.15+ds1","Details":{"GitCommit":"1.1.15+ds1-2+deb13u1"}},
{"Name":"docker-init","Version":"0.19.0","Details":{"GitCommit":""}}],
"Version":"26.1.5+dfsg1","ApiVersion":"1.45","MinAPIVersion":"1.24","GitCommit":"411e817","GoVersion":"go1.24.4","Os":"linux","Arch":"amd64","KernelVersion":"6.12.118+deb13-amd64","BuildTime":"2025-06-01T00:00:00.000000000+00:00"}`

func TestParseDockerVersion(t *testing.T) {
	v, err := parseDockerVersion(strings.NewReader(dockerdVersion))
	if err != nil {
		t.Fatal(err)
	}
	want := EngineVersions{Engine: "26.1.5+dfsg1", API: "1.45", Containerd: "1.7.24~ds1", Runc: "1.1.15+ds1", Init: "0.19.0"}
	if v != want {
		t.Errorf("got %+v, want %+v", v, want)
	}

	// An engine that reports no components (older or stripped builds): only its own.
	v, err = parseDockerVersion(strings.NewReader(`{"Version":"20.10.24+dfsg1","ApiVersion":"1.41"}`))
	if err != nil || v != (EngineVersions{Engine: "20.10.24+dfsg1", API: "1.41"}) {
		t.Errorf("no components: %+v, %v", v, err)
	}
	if _, err := parseDockerVersion(strings.NewReader("<html>")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseBinaryVersions(t *testing.T) {
	for _, c := range []struct{ out, want string }{
		{"containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n", "1.7.24~ds1"},
		{"containerd containerd.io v1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da\n", "1.7.27"},
		{"containerd 2.0.0\n", "2.0.0"},
		{"ctr github.com/containerd/containerd 1.7.24\n", ""},
		{"", ""},
	} {
		if got := parseContainerdVersion([]byte(c.out)); got != c.want {
			t.Errorf("containerd %q: got %q, want %q", c.out, got, c.want)
		}
	}
	runc := "runc version 1.1.15+ds1\ncommit: 1.1.15+ds1-2+deb13u1\nspec: 1.0.2-dev\ngo: go1.24.4\nlibseccomp: 2.6.0\n"
	if got := parseRuncVersion([]byte(runc)); got != "1.1.15+ds1" {
		t.Errorf("runc: got %q", got)
	}
	if got := parseRuncVersion([]byte("crun version 1.19\n")); got != "" {
		t.Errorf("not runc: got %q", got)
	}
}

func TestParseOSRelease(t *testing.T) {
	trixie := `PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
# a comment
ID=debian
`
	if got := parseOSRelease(strings.NewReader(trixie)); got != "Debian GNU/Linux 13 (trixie)" {
		t.Errorf("got %q", got)
	}
	if got := parseOSRelease(strings.NewReader("NAME='Other'\nVERSION=1\n")); got != "Other 1" {
		t.Errorf("no PRETTY_NAME: got %q", got)
	}
}
