//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEngineEveryday boots one instance and checks, on it, the docker socket's mount check
// (this file), the engine options: proxy, company CA, daemon.json (engine_options_test.go)
// and `berth doctor` (doctor_test.go). One restart applies a changed docker: section and
// drops the CA. The state dir sits on a small loop-mounted file system, so that doctor's
// disk space check can be made to fail.
func TestEngineEveryday(t *testing.T) {
	e := newEnv(t)
	loop := mountSmallFS(t, e.home, 3<<30)
	shared := filepath.Join(e.root, "shared")
	os.MkdirAll(filepath.Join(shared, "sub"), 0o755)
	os.WriteFile(filepath.Join(shared, "sub", "hello.txt"), []byte("hello from a share\n"), 0o644)
	ca := newTestCA(t, e.root)
	reg := startRegistry(t, e.root, ca)

	writeConfig(t, e, "default", "shares:\n  - path: "+shared+"\n"+
		"caCerts: ["+ca.caFile+"]\n"+ // beside the host's own store (hostCACerts defaults to true)
		"dnsSearch: [berth.test]\n")
	// The proxy comes from berth's environment. NO_PROXY keeps the test registry direct;
	// a proxy on the host's loopback is nothing that could leave the machine.
	e.extra = []string{"HTTP_PROXY=http://127.0.0.1:3128", "NO_PROXY=host.docker.internal,localhost"}
	e.mustBerth("start")
	e.extra = nil
	e.busyboxImage(image)

	t.Run("mounts", func(t *testing.T) { testMountCheck(t, e, shared) })
	t.Run("streams through the check", func(t *testing.T) { testStreamsThroughCheck(t, e) })
	t.Run("proxy", func(t *testing.T) { testProxy(t, e) })
	t.Run("dns", func(t *testing.T) { testDNS(t, e) })
	t.Run("ca", func(t *testing.T) { testCATrusted(t, e, reg) })
	t.Run("doctor", func(t *testing.T) { testDoctor(t, e, loop) })

	// Restart with a docker: section and without the CA.
	writeConfig(t, e, "default", "shares:\n  - path: "+shared+"\n"+
		"hostCACerts: false\n"+
		"docker:\n  registry-mirrors: [https://mirror.berth.test]\n  log-opts: {max-size: 10m, max-file: 3}\n")
	e.mustBerth("restart")
	t.Run("daemon.json", func(t *testing.T) { testDaemonJSON(t, e) })
	t.Run("ca removed", func(t *testing.T) { testCAUntrusted(t, e, reg) })
}

// testMountCheck: bind sources outside every share are refused with a message naming the
// path and the fix; shared paths, named volumes, VM paths and host symlinks into a share
// work.
func testMountCheck(t *testing.T, e *env, shared string) {
	unshared := filepath.Join(e.root, "unshared")
	os.MkdirAll(unshared, 0o755)
	for _, args := range [][]string{
		{"run", "--rm", "-v", unshared + ":/x", image, "true"},
		{"run", "--rm", "--mount", "type=bind,source=" + unshared + ",target=/x", image, "true"},
		{"create", "-v", "/not/shared:/x", image, "true"},
	} {
		out, err := e.docker_(nil, args...)
		if err == nil {
			t.Errorf("docker %s: succeeded", strings.Join(args, " "))
			continue
		}
		src := unshared
		if args[0] == "create" {
			src = "/not/shared"
		}
		for _, want := range []string{"Mounts denied", src + " is not shared", "berth config edit", "berth restart"} {
			if !strings.Contains(out, want) {
				t.Errorf("docker %s: output lacks %q", strings.Join(args, " "), want)
			}
		}
	}
	// dockerd never saw the request: it did not create the directory in the VM.
	if out, err := e.berth("shell", "--", "sh", "-c", "test -e /not/shared && echo CREATED || echo absent"); err != nil || !strings.Contains(out, "absent") {
		t.Errorf("/not/shared in the VM: %q %v", out, err)
	}
	if out := e.mustDocker("run", "--rm", "-v", shared+":/s:ro", image, "cat", "/s/sub/hello.txt"); out != "hello from a share\n" {
		t.Errorf("shared path: %q", out)
	}
	e.mustDocker("run", "--rm", "-v", "berth-e2e-vol:/data", image, "sh", "-c", "echo v > /data/f")
	if out := e.mustDocker("run", "--rm", "-v", "berth-e2e-vol:/data", image, "cat", "/data/f"); out != "v\n" {
		t.Errorf("named volume: %q", out)
	}
	e.mustDocker("run", "--rm", "-v", "/var/run/docker.sock:/var/run/docker.sock", image, "test", "-S", "/var/run/docker.sock")
	// A host symlink outside the shares that leads into one is translated, as Docker
	// Desktop does for macOS's /tmp.
	link := filepath.Join(e.root, "link-into-share")
	if err := os.Symlink(filepath.Join(shared, "sub"), link); err != nil {
		t.Fatal(err)
	}
	if out := e.mustDocker("run", "--rm", "-v", link+":/l", image, "cat", "/l/hello.txt"); out != "hello from a share\n" {
		t.Errorf("symlinked path: %q", out)
	}
}

// testStreamsThroughCheck: hijacked and streaming connections pass the check unchanged.
func testStreamsThroughCheck(t *testing.T, e *env) {
	if out := e.ttyDocker(t, "run", "-it", "--rm", image, "sh", "-c", "tty"); !strings.Contains(out, "/dev/pts/") {
		t.Errorf("run -it: %q", out)
	}
	e.mustDocker("run", "-d", "--name", "bg", image, "sleep", "600")
	defer e.docker_(nil, "rm", "-f", "bg")
	if out := e.ttyDocker(t, "exec", "-it", "bg", "sh", "-c", "tty"); !strings.Contains(out, "/dev/pts/") {
		t.Errorf("exec -it: %q", out)
	}
	if out := e.mustDocker("run", "-i", "--rm", image, "cat"); out != "" {
		t.Errorf("run -i with no stdin: %q", out)
	}
	e.mustDocker("run", "-d", "--name", "att", image, "sh", "-c", "sleep 8; echo attached-ok")
	defer e.docker_(nil, "rm", "-f", "att")
	if out := e.mustDocker("attach", "att"); !strings.Contains(out, "attached-ok") {
		t.Errorf("attach: %q", out)
	}
	e.mustDocker("run", "-d", "--name", "lg", image, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done")
	defer e.docker_(nil, "rm", "-f", "lg")
	if out := e.mustDocker("logs", "-f", "lg"); !strings.Contains(out, "line1\nline2\nline3\n") {
		t.Errorf("logs -f: %q", out)
	}
	// The classic builder's POST /build carries the context as a chunked body: the check
	// frames it and stays in step for the requests after it.
	dir := filepath.Join(e.root, "build")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+image+"\nCOPY data /berth-blob\nRUN cat /berth-blob > /copied\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "data"), []byte(strings.Repeat("x", 3<<20)), 0o644)
	cmd := e.dockerCmd(t.Context(), "build", "-q", "-t", "berth-e2e/built", dir)
	cmd.Env = append(cmd.Env, "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	if out := e.mustDocker("run", "--rm", "berth-e2e/built", "wc", "-c", "/copied"); !strings.Contains(out, "3145728") {
		t.Errorf("built image: %q", out)
	}
}

// mountSmallFS mounts a fresh ext4 file system of size bytes at dir (root only), so tests
// can fill it; it is detached when the test ends.
func mountSmallFS(t *testing.T, dir string, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop mount")
	}
	img := dir + ".img"
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	os.MkdirAll(dir, 0o700)
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	os.Chmod(dir, 0o700)
	t.Cleanup(func() {
		// Lazily: the instance is stopped by the env's teardown, which runs after this.
		for range 3 {
			if exec.Command("umount", "-l", dir).Run() == nil {
				break
			}
			time.Sleep(time.Second)
		}
		os.Remove(img)
	})
	return dir
}
