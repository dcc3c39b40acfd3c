//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/doctor"
)

// doctorJSON runs `berth doctor --json` without the outbound probe (that would resolve a
// name on the host's network) and returns the report and whether it exited zero.
func doctorJSON(t *testing.T, e *env) (doctor.Report, bool) {
	t.Helper()
	out, err := e.berth("doctor", "--json", "--probe-host=")
	var rep doctor.Report
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("doctor --json: %v: %s", jerr, out)
	}
	if (err == nil) != rep.OK {
		t.Errorf("doctor exit status (%v) disagrees with ok=%v", err, rep.OK)
	}
	return rep, err == nil
}

func findCheck(rep doctor.Report, prefix string) (doctor.Check, bool) {
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, prefix) {
			return c, true
		}
	}
	return doctor.Check{}, false
}

// testDoctor: healthy, then a host port in conflict, then a nearly full state dir.
func testDoctor(t *testing.T, e *env, stateFS string) {
	rep, ok := doctorJSON(t, e)
	if !ok {
		t.Fatalf("doctor fails on a healthy instance: %+v", rep)
	}
	for _, name := range []string{"daemon", "docker socket", "docker context", "image", "disk space", "guest DNS", "share "} {
		if c, found := findCheck(rep, name); !found || c.Status == doctor.Fail || c.Status == doctor.Skip {
			t.Errorf("check %q: %+v", name, c)
		}
	}
	if c, _ := findCheck(rep, "guest clock"); c.Status == doctor.Fail || c.Status == doctor.Skip {
		t.Errorf("guest clock: %+v", c)
	}

	// A host port in conflict: something on the host holds the port a container publishes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	e.mustDocker("run", "-d", "--name", "conflict", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), image, "sleep", "600")
	defer e.docker_(nil, "rm", "-f", "conflict")
	var c doctor.Check
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, ok = doctorJSON(t, e)
		var found bool
		c, found = findCheck(rep, fmt.Sprintf("port %d", port))
		if found || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if ok || c.Status != doctor.Fail || !strings.Contains(c.Fix, fmt.Sprintf("%d", port)) || !strings.Contains(c.Fix, "docker run -p") {
		t.Errorf("port conflict: ok=%v %+v", ok, c)
	}
	e.docker_(nil, "rm", "-f", "conflict")

	// The state dir's file system nearly full.
	var st syscall.Statfs_t
	if err := syscall.Statfs(stateFS, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	filler := filepath.Join(stateFS, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filler)
	// Leave 200 MiB: under doctor's 1 GiB, yet room for the VM's writes meanwhile.
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-200<<20); err != nil {
		f.Close()
		t.Fatalf("fallocate: %v", err)
	}
	f.Close()
	rep, ok = doctorJSON(t, e)
	c, _ = findCheck(rep, "disk space")
	os.Remove(filler)
	if ok || c.Status != doctor.Fail || !strings.Contains(c.Message, "free") || !strings.Contains(c.Fix, "free at least") {
		t.Errorf("nearly full state dir: ok=%v %+v", ok, c)
	}
}
