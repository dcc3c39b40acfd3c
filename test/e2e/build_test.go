//go:build e2e

package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// noLegacy fails when a build's output shows the classic builder: its deprecation notice,
// or the "Step 1/N" lines BuildKit never prints.
func noLegacy(t *testing.T, what, out string) {
	t.Helper()
	for _, bad := range []string{"legacy builder is deprecated", "DEPRECATED: The legacy builder", "Step 1/"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s used the legacy builder (%q in its output)", what, bad)
		}
	}
}

// testBuild runs BuildKit builds through the berth context with the host's docker CLI and
// with berth's own: a cache mount reused across builds, a multi-stage build with --target,
// --build-arg and .dockerignore, and a 1 GiB context streamed through the socket.
func testBuild(t *testing.T, e *env, tc *toolchain) {
	clis := map[string]string{"host": "docker", "berth": filepath.Join(tc.dir, "docker")}

	t.Run("cache-mount", func(t *testing.T) {
		dir := filepath.Join(e.root, "build-cache")
		copyTree(t, "testdata/build/cache", dir)
		for _, name := range []string{"host", "berth"} {
			cli := clis[name]
			out := e.mustRunDocker(cli, dir, nil, "build", "--progress=plain", "--build-arg", "SEED="+name+"-1", "-t", "berth-e2e/cache:"+name, ".")
			noLegacy(t, name+" docker build", out)
			if name == "host" && !strings.Contains(out, "CACHE-MOUNT-MISS") {
				t.Errorf("the first build on a fresh VM found a cache mount stamp already:\n%s", out)
			}
			out = e.mustRunDocker(cli, dir, nil, "build", "--progress=plain", "--build-arg", "SEED="+name+"-2", "-t", "berth-e2e/cache:"+name, ".")
			noLegacy(t, name+" docker build", out)
			// The second build ran the step again (new SEED) and found the stamp the first
			// build (or the other CLI's, before it) left in the cache mount.
			if !strings.Contains(out, "CACHE-MOUNT-HIT") || !strings.Contains(out, "seed="+name+"-2") {
				t.Errorf("%s: the second build did not reuse the cache mount:\n%s", name, out)
			}
		}
	})

	t.Run("multistage", func(t *testing.T) {
		dir := filepath.Join(e.root, "build-multistage")
		copyTree(t, "testdata/build/multistage", dir)
		for _, name := range []string{"host", "berth"} {
			cli := clis[name]
			tag := "berth-e2e/multi-" + name
			out := e.mustRunDocker(cli, dir, nil, "build", "--progress=plain", "--target", "test", "--build-arg", "GREETING=hello-"+name, "-t", tag+":test", ".")
			noLegacy(t, name+" docker build --target test", out)
			got := e.mustRunDocker(cli, dir, nil, "run", "--rm", tag+":test", "cat", "/greeting", "/listing")
			if !strings.HasPrefix(got, "hello-"+name+"\n") {
				t.Errorf("%s: --build-arg GREETING not applied: %q", name, got)
			}
			for _, want := range []string{"Dockerfile", "keep.txt", ".dockerignore"} {
				if !strings.Contains(got, want+"\n") {
					t.Errorf("%s: %s missing from the context: %q", name, want, got)
				}
			}
			for _, ignored := range []string{"secret.txt", "debug.log"} {
				if strings.Contains(got, ignored) {
					t.Errorf("%s: .dockerignore did not keep %s out: %q", name, ignored, got)
				}
			}
			// --target base stops before the test stage.
			e.mustRunDocker(cli, dir, nil, "build", "--target", "base", "-t", tag+":base", ".")
			if out, err := e.runDocker(cli, dir, nil, "run", "--rm", tag+":base", "test", "-e", "/listing"); err == nil {
				t.Errorf("%s: --target base built the test stage too: %s", name, out)
			}
		}
	})

	t.Run("context-1GiB", func(t *testing.T) {
		if !soakRun {
			// 4–5 minutes under TCG: make soak runs it, make bench measures it (BenchmarkCompose).
			t.Skip("the 1 GiB build context runs in make soak (and BenchmarkCompose)")
		}
		const size = 1 << 30
		dir := bigContext(t, e, size)
		t0 := time.Now()
		out := e.mustRunDocker(clis["host"], dir, nil, "build", "--progress=plain", "--no-cache", "-t", "berth-e2e/bigctx", ".")
		took := time.Since(t0)
		noLegacy(t, "1 GiB context build", out)
		if !strings.Contains(out, "BYTES=1073741824") {
			t.Errorf("the build did not see the whole 1 GiB context:\n%s", out)
		}
		t.Logf("1 GiB build context: %.1fs (%.1f MiB/s)", took.Seconds(), float64(size>>20)/took.Seconds())
	})
}

// bigContext writes a build context holding size bytes of random data (random, so nothing
// on the way can compress it) and a Dockerfile that counts them through a bind mount of the
// context, without copying them into a layer.
func bigContext(t testing.TB, e *env, size int64) string {
	t.Helper()
	dir := filepath.Join(e.root, "build-big")
	os.MkdirAll(dir, 0o755)
	df := "FROM " + image + "\nRUN --mount=type=bind,target=/ctx echo BYTES=$(wc -c < /ctx/big)\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// 64 MiB of random data, repeated: cheap to make, still incompressible in practice.
	chunk := make([]byte, 64<<20)
	rand.Read(chunk)
	for n := int64(0); n < size; n += int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}
