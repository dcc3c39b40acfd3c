package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests run `go list` for darwin and type-check Code-Hex/vz from the module cache
// (go list downloads it through the proxy when missing). A few seconds; skipped with -short.

func needGo(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("type-checks the darwin dependency graph; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
}

type want struct {
	file, text string
	line       int
	amd64Only  bool
}

// fixtureWants reads the "// want: <text>" markers from the fixture, so the expected lines
// follow the file.
func fixtureWants(t *testing.T) []want {
	t.Helper()
	var ws []want
	files, _ := filepath.Glob("testdata/badvz/*.go")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			_, text, ok := strings.Cut(sc.Text(), "// want: ")
			if !ok {
				continue
			}
			w := want{file: filepath.Base(f), line: n, text: text}
			if strings.HasPrefix(text, "undefined on amd64") {
				w.text, w.amd64Only = "undefined: vzlib.LinuxRosetta", true
			}
			ws = append(ws, w)
		}
	}
	if len(ws) != 3 {
		t.Fatalf("fixture has %d want markers, expected 3", len(ws))
	}
	return ws
}

func TestFixtureErrorsAreReported(t *testing.T) {
	needGo(t)
	res, err := Check(Options{Patterns: []string{"./testdata/badvz"}, Tags: "berth_typecheck_fixture", Tests: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Own {
		t.Logf("got %s", d.Format(""))
	}
	for _, w := range fixtureWants(t) {
		found := false
		for _, d := range res.Own {
			if filepath.Base(d.Pos.Filename) != w.file || d.Pos.Line != w.line || !strings.Contains(d.Msg, w.text) {
				continue
			}
			found = true
			if w.amd64Only != (len(d.Arches) == 1 && d.Arches[0] == "amd64") {
				t.Errorf("%s:%d: arches %v", w.file, w.line, d.Arches)
			}
		}
		if !found {
			t.Errorf("no error %q reported at %s:%d", w.text, w.file, w.line)
		}
	}
	// Two calls in bad_darwin.go, and two undefined names on one line of the amd64 file;
	// Good() must produce nothing, so vz really was resolved.
	if len(res.Own) != 4 {
		t.Errorf("got %d errors, want 4", len(res.Own))
	}
}

func TestRunExitStatusAndFormat(t *testing.T) {
	needGo(t)
	var out, errb bytes.Buffer
	code := run([]string{"-arch", "arm64", "-tags", "berth_typecheck_fixture", "./testdata/badvz"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errb.String())
	}
	want := filepath.Join("testdata", "badvz", "bad_darwin.go") + ":13:37: cannot use 42 (untyped int constant) as string value in argument to vzlib.NewLinuxBootLoader"
	if !strings.Contains(out.String(), want+"\n") {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "rosetta_darwin_amd64.go") {
		t.Fatalf("amd64-only file checked for arm64:\n%s", out.String())
	}
}

// Without its build tag the fixture is no darwin code at all and nothing is reported.
func TestFixtureNeedsTag(t *testing.T) {
	needGo(t)
	res, err := Check(Options{Patterns: []string{"./testdata/badvz"}, Arches: []string{"arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Own) != 0 || res.OwnPackages != 0 {
		t.Fatalf("got %d errors in %d packages: %v", len(res.Own), res.OwnPackages, res.Own)
	}
}

// The real macOS driver type-checks against vz v3.7.1 on both architectures, test files
// included, and the only error inside vz itself is the known spurious one.
func TestVZDriverPasses(t *testing.T) {
	needGo(t)
	res, err := Check(Options{Patterns: []string{"github.com/berth-dev/berth/vm/vz"}, Tests: true, Deps: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Own {
		t.Errorf("%s", d.Format(""))
	}
	if res.OwnPackages < 4 { // vm/vz and its test variant, for two architectures
		t.Errorf("checked %d own packages, want at least 4", res.OwnPackages)
	}
	for _, d := range res.Deps {
		t.Logf("dependency: %s", d.Format(""))
		if !strings.Contains(filepath.ToSlash(d.Pos.Filename), "/vz/v3@v3.7.1/") {
			t.Errorf("unexpected error outside vz: %s", d.Format(""))
		}
	}
}
