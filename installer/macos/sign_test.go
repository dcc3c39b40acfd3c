// Package macos holds the macOS signing files; this test checks them on any Unix.
package macos

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEntitlements parses berth.entitlements as a plist dict and requires exactly the
// virtualization entitlement, set to true.
func TestEntitlements(t *testing.T) {
	data, err := os.ReadFile("berth.entitlements")
	if err != nil {
		t.Fatal(err)
	}
	var plist struct {
		Dict struct {
			Inner []byte `xml:",innerxml"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(data, &plist); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	dec := xml.NewDecoder(strings.NewReader("<d>" + string(plist.Dict.Inner) + "</d>"))
	got := map[string]string{}
	var key string
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch el.Name.Local {
			case "key":
				var k string
				if err := dec.DecodeElement(&k, &el); err != nil {
					t.Fatal(err)
				}
				key = k
			case "true", "false":
				got[key] = el.Name.Local
			}
		}
	}
	if len(got) != 1 || got["com.apple.security.virtualization"] != "true" {
		t.Fatalf("entitlements %v, want only com.apple.security.virtualization=true", got)
	}
}

// fakeCodesign puts a codesign on PATH that logs its arguments and prints the entitlement
// on --display, and returns the PATH and the log file.
func fakeCodesign(t *testing.T) (string, string) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "log")
	script := "#!/bin/sh\necho \"$*\" >> " + logf + "\ncase \"$*\" in *--display*) echo '<key>com.apple.security.virtualization</key>';; esac\n"
	if err := os.WriteFile(filepath.Join(dir, "codesign"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + string(os.PathListSeparator) + "/usr/bin:/bin", logf
}

func runSign(t *testing.T, path string, env []string, args ...string) (string, error) {
	cmd := exec.Command("./sign.sh", args...)
	cmd.Env = append([]string{"PATH=" + path}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSignScript(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	if runtime.GOOS == "darwin" {
		t.Skip("macOS has a real codesign in /usr/bin; this test fakes it, so it runs on other Unixes")
	}
	bin := filepath.Join(t.TempDir(), "berth")
	if err := os.WriteFile(bin, []byte("not really Mach-O"), 0o755); err != nil {
		t.Fatal(err)
	}
	ent, _ := filepath.Abs("berth.entitlements")

	// Without codesign: a clear error, exit 1.
	out, err := runSign(t, "/usr/bin:/bin", nil, bin)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "codesign not found") {
		t.Fatalf("no codesign: %v\n%s", err, out)
	}

	path, logf := fakeCodesign(t)
	out, err = runSign(t, path, nil, bin)
	if err != nil {
		t.Fatalf("ad hoc: %v\n%s", err, out)
	}
	log, _ := os.ReadFile(logf)
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if want := "--force --entitlements " + ent + " --sign - " + bin; lines[0] != want {
		t.Fatalf("ad hoc codesign call\n got %q\nwant %q", lines[0], want)
	}
	if !strings.Contains(out, "signed ad hoc") {
		t.Fatalf("output %q", out)
	}

	os.Remove(logf)
	out, err = runSign(t, path, []string{"BERTH_SIGN_IDENTITY=Developer ID Application: Example (ABCDE12345)"}, bin)
	if err != nil {
		t.Fatalf("identity: %v\n%s", err, out)
	}
	log, _ = os.ReadFile(logf)
	first := strings.SplitN(string(log), "\n", 2)[0]
	if want := "--force --entitlements " + ent + " --options runtime --timestamp --sign Developer ID Application: Example (ABCDE12345) " + bin; first != want {
		t.Fatalf("identity codesign call\n got %q\nwant %q", first, want)
	}

	if out, err := runSign(t, path, nil, filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(out, "no such file") {
		t.Fatalf("missing binary: %v %s", err, out)
	}
}
