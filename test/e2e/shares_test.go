//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// TestShares checks a shared directory whose path has spaces and non-ASCII characters:
// files cross in both directions with sensible ownership, host edits fire inotify in a
// container, and a symlink planted in the share cannot reach a host file outside it.
func TestShares(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.root, "my projects", "ünïcode dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(e.root, "secret.txt")
	os.WriteFile(secret, []byte("TOPSECRET\n"), 0o600)
	writeConfig(t, e, "default", fmt.Sprintf("shares:\n  - path: %q\n", dir))
	e.mustBerth("start")
	e.busyboxImage(image)
	vol := dir + ":/w"

	var mounts []api.Mount
	json.Unmarshal([]byte(e.mustBerth("mounts", "--json")), &mounts)
	if len(mounts) != 1 || mounts[0].Path != dir || mounts[0].State != "mounted" {
		t.Fatalf("mounts: %+v", mounts)
	}
	t.Logf("share type %s", mounts[0].Type)

	t.Run("host to container", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "from host.txt"), []byte("hello from the host\n"), 0o644)
		if out := e.mustDocker("run", "--rm", "-v", vol, image, "cat", "/w/from host.txt"); out != "hello from the host\n" {
			t.Errorf("container read %q", out)
		}
	})
	t.Run("container to host", func(t *testing.T) {
		e.mustDocker("run", "--rm", "-v", vol, image, "sh", "-c", "echo written in a container > /w/from-container.txt")
		p := filepath.Join(dir, "from-container.txt")
		b, err := os.ReadFile(p)
		if err != nil || string(b) != "written in a container\n" {
			t.Fatalf("host read %q, %v", b, err)
		}
		st, _ := os.Stat(p)
		sys := st.Sys().(*syscall.Stat_t)
		if int(sys.Uid) != os.Getuid() {
			t.Errorf("file owned by uid %d, want the host user %d", sys.Uid, os.Getuid())
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("mode %v, want -rw-r--r--", st.Mode().Perm())
		}
	})

	t.Run("unicode, spaces and commas in names", func(t *testing.T) {
		sub := filepath.Join(dir, "Tést, dir", "日本語")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(sub, "emoji 🐳.txt"), []byte("ünïcödé\n"), 0o644)
		if out := e.mustDocker("run", "--rm", "-v", vol, image, "cat", "/w/Tést, dir/日本語/emoji 🐳.txt"); out != "ünïcödé\n" {
			t.Errorf("container read %q", out)
		}
		e.mustDocker("run", "--rm", "-v", vol, image, "sh", "-c", "echo 日本 > '/w/Tést, dir/日本語/from guest 🐋.txt'")
		if b, err := os.ReadFile(filepath.Join(sub, "from guest 🐋.txt")); err != nil || string(b) != "日本\n" {
			t.Errorf("host read %q, %v", b, err)
		}
	})

	t.Run("host edits fire inotify in a container", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "modme.txt"), []byte("v1\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "delme.txt"), []byte("x\n"), 0o644)
		e.mustDocker("run", "-d", "-p", "18300:8000", "-v", vol, image, "testsrv", "watch", "/w", "8000")
		waitHTTP(t, "http://127.0.0.1:18300/count", 5*time.Second)
		for _, step := range []struct {
			name   string
			do     func()
			expect string // substring of the event
		}{
			{"modify", func() { os.WriteFile(filepath.Join(dir, "modme.txt"), []byte("v2\n"), 0o644) }, "modme.txt"},
			{"create", func() { os.WriteFile(filepath.Join(dir, "new.txt"), []byte("new\n"), 0o644) }, "new.txt"},
			{"delete", func() { os.Remove(filepath.Join(dir, "delme.txt")) }, "MODIFY"},
		} {
			latency, ev := nextEvent(t, "http://127.0.0.1:18300", step.do)
			t.Logf("%s: %q after %s", step.name, ev, latency)
			if !strings.Contains(ev, step.expect) {
				t.Errorf("%s: event %q, want %q", step.name, ev, step.expect)
			}
			if latency > time.Second {
				t.Errorf("%s: event after %s, want within 1s", step.name, latency)
			}
		}
	})

	t.Run("symlinks cannot escape the share", func(t *testing.T) {
		// Absolute and relative links to a host file outside the share, planted from a
		// container and from the VM itself.
		e.mustDocker("run", "--rm", "-v", vol, image, "sh", "-c",
			fmt.Sprintf("ln -s %q /w/abs-link && ln -s ../../secret.txt /w/rel-link", secret))
		for _, link := range []string{"abs-link", "rel-link"} {
			out, _ := e.docker_(nil, "run", "--rm", "-v", vol, image, "cat", "/w/"+link)
			if strings.Contains(out, "TOPSECRET") {
				t.Errorf("container read the host secret through %s", link)
			}
			e.docker_(nil, "run", "--rm", "-v", vol, image, "sh", "-c", "echo pwned > /w/"+link)
			out, _ = e.berth("shell", "--", "cat", filepath.Join(dir, link))
			if strings.Contains(out, "TOPSECRET") {
				t.Errorf("the VM read the host secret through %s", link)
			}
			e.berth("shell", "--", "sh", "-c", "echo pwned > "+shellQuote(filepath.Join(dir, link)))
		}
		if b, _ := os.ReadFile(secret); string(b) != "TOPSECRET\n" {
			t.Errorf("the host file outside the share was changed: %q", b)
		}
	})
}

// nextEvent waits for the watcher's next inotify event while do() changes the share, and
// returns how long after the change the event arrived.
func nextEvent(t testing.TB, base string, do func()) (time.Duration, string) {
	t.Helper()
	// Wait until earlier changes have all arrived, so the next event is this one's.
	count := func() string {
		resp, err := http.Get(base + "/count")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	// Events that never stop coming would be a replay loop between host and guest.
	b := count()
	for settle := time.Now(); ; {
		time.Sleep(500 * time.Millisecond)
		c := count()
		if c == b {
			break
		}
		if time.Since(settle) > 10*time.Second {
			t.Fatalf("inotify events keep coming (%s → %s): a host↔guest replay loop", b, c)
		}
		b = c
	}
	type result struct {
		at time.Time
		ev string
	}
	got := make(chan result, 1)
	go func() {
		r, err := http.Get(base + "/wait?n=" + b)
		if err != nil {
			got <- result{time.Now(), err.Error()}
			return
		}
		ev, _ := io.ReadAll(r.Body)
		r.Body.Close()
		got <- result{time.Now(), string(ev)}
	}()
	time.Sleep(300 * time.Millisecond) // the long poll is waiting in the container
	t0 := time.Now()
	do()
	select {
	case r := <-got:
		return r.at.Sub(t0), r.ev
	case <-time.After(10 * time.Second):
		t.Fatal("no inotify event in the container within 10s")
	}
	return 0, ""
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
