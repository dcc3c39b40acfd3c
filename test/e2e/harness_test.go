//go:build e2e

// Package e2e boots real berth VMs and drives them with the real docker CLI. Run through
// `make test-e2e`, which builds the binaries and images and guarantees teardown.
package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// env is one hermetic berth + docker CLI setup.
type env struct {
	t      testing.TB
	root   string // scratch dir
	home   string // BERTH_HOME
	docker string // DOCKER_CONFIG
	extra  []string
}

func berthBin(t testing.TB) string {
	b := os.Getenv("BERTH_BIN")
	if b == "" {
		t.Skip("BERTH_BIN not set: run through `make test-e2e`")
	}
	return b
}

func newEnv(t testing.TB) *env {
	berthBin(t)
	base := os.Getenv("BERTH_E2E_ROOT")
	if base == "" {
		base = t.TempDir()
	}
	root, err := os.MkdirTemp(base, "t")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, home: filepath.Join(root, "b"), docker: filepath.Join(root, "d")}
	t.Cleanup(e.teardown)
	return e
}

func (e *env) environ() []string {
	env := append(os.Environ(), "BERTH_HOME="+e.home, "DOCKER_CONFIG="+e.docker)
	return append(env, e.extra...)
}

// berth runs the CLI and returns its combined output and error.
func (e *env) berth(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Getenv("BERTH_BIN"), args...)
	cmd.Env = e.environ()
	out, err := cmd.CombinedOutput()
	e.t.Logf("$ berth %s\n%s", strings.Join(args, " "), out)
	return string(out), err
}

func (e *env) mustBerth(args ...string) string {
	e.t.Helper()
	out, err := e.berth(args...)
	if err != nil {
		e.t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// dockerCmd builds a docker CLI command against the berth context.
func (e *env) dockerCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--context", "berth"}, args...)...)
	cmd.Env = e.environ()
	return cmd
}

func (e *env) docker_(stdin io.Reader, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.dockerCmd(ctx, args...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	e.t.Logf("$ docker %s\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

func (e *env) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker_(nil, args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *env) status(name string) api.Status {
	e.t.Helper()
	out, _ := e.berth("status", "--json", name)
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status --json: %v: %s", err, out)
	}
	return st
}

// teardown stops every instance this env started, even after a failed test, and dumps
// the logs that explain a failure.
func (e *env) teardown() {
	entries, _ := os.ReadDir(e.home)
	for _, d := range entries {
		if !d.IsDir() || strings.HasPrefix(d.Name(), "_") {
			continue
		}
		if e.t.Failed() {
			e.dumpLogs(d.Name())
		}
		if _, err := os.Stat(filepath.Join(e.home, d.Name(), "hostd.pid")); err == nil {
			e.berth("stop", "--force", d.Name())
		}
	}
}

// dumpLogs logs the ends of instance name's hostd.log and console.log.
func (e *env) dumpLogs(name string) {
	for _, f := range []string{"hostd.log", "console.log"} {
		b, _ := os.ReadFile(filepath.Join(e.home, name, f))
		if len(b) > 16<<10 {
			b = b[len(b)-16<<10:]
		}
		e.t.Logf("==== %s/%s ====\n%s", name, f, b)
	}
}

// busyboxImage imports a busybox image built from the host's busybox-static: there is no
// registry to pull from.
func (e *env) busyboxImage(tag string) {
	e.t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		e.t.Fatalf("busybox not found (apt-get install busybox-static): %v", err)
	}
	tarball := filepath.Join(e.root, "busybox.tar")
	if err := writeBusyboxTar(bb, tarball); err != nil {
		e.t.Fatal(err)
	}
	e.mustDocker("import", tarball, tag)
}

func writeBusyboxTar(bb, path string) error {
	bin, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	srv, err := buildTestsrv(filepath.Dir(path), runtime.GOARCH)
	if err != nil {
		return err
	}
	// The same program as a 32-bit binary: there, socket(2) and connect(2) go through
	// socketcall(2), a separate door for the isolation checks.
	var srv32 []byte
	if runtime.GOARCH == "amd64" {
		if srv32, err = buildTestsrv(filepath.Dir(path), "386"); err != nil {
			return err
		}
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, d := range []string{"bin/", "tmp/", "etc/", "root/", "data/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/testsrv", Mode: 0o755, Size: int64(len(srv))})
	tw.Write(srv)
	if srv32 != nil {
		tw.WriteHeader(&tar.Header{Name: "bin/testsrv32", Mode: 0o755, Size: int64(len(srv32))})
		tw.Write(srv32)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\n"
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd))})
	tw.Write([]byte(passwd))
	return tw.Close()
}

// buildTestsrv compiles the static test server for a guest architecture.
func buildTestsrv(dir, arch string) ([]byte, error) {
	out := filepath.Join(dir, "testsrv-"+arch)
	if b, err := os.ReadFile(out); err == nil {
		return b, nil
	}
	cmd := exec.Command("go", "build", "-o", out, "./testsrv")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build testsrv: %v: %s", err, b)
	}
	return os.ReadFile(out)
}
