//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// TestHostDiskFull puts the state dir on a small loop-mounted file system and fills it up
// while the guest writes: QEMU pauses the VM on ENOSPC (werror=enospc), berth shows the
// full host disk (status, and an event for the tray), and once space is freed it resumes
// the VM by itself; the guest's write completes, no state file is damaged, work goes on.
func TestHostDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a small file system for the state dir")
	}
	e := newEnv(t)
	mnt := smallFS(t, e, "3G")
	// Everything of the instance lives on the small file system; the docker CLI's config
	// stays where it was.
	e.home = filepath.Join(mnt, "b")
	const name = "default" // the docker helpers use the context "berth"
	writeConfig(t, e, name, "cpus: 2\nmemory: 2\ndisk: 4\nshares: []\nportListeners: none\n")
	e.mustBerth("start", name)
	e.busyboxImage(image)
	inst := &store.Instance{Name: name, Dir: filepath.Join(e.home, name)}
	checkStateFiles(t, inst)

	// Follow the event stream: the tray learns of the problem from it.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := api.NewClient(inst.Path(store.ControlSock))
	var mu sync.Mutex
	var events []api.Event
	go client.Events(ctx, func(ev api.Event) bool {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
		return true
	})

	// Leave 64 MiB on the host file system, then have the guest write 1500 MiB through
	// to its disk.
	filler := filepath.Join(mnt, "filler")
	free := freeBytes(t, mnt)
	const leave = 64 << 20
	if free < leave+(256<<20) {
		t.Fatalf("only %d MiB free on the small file system after the start", free>>20)
	}
	if out, err := exec.Command("fallocate", "-l", fmt.Sprint(free-leave), filler).CombinedOutput(); err != nil {
		t.Fatalf("fallocate: %v: %s", err, out)
	}
	t.Logf("host file system: %d MiB free before the filler, %d MiB after", free>>20, freeBytes(t, mnt)>>20)
	const mib = 1500
	e.mustDocker("run", "-d", "--name", "writer", image, "dd", "if=/dev/zero", "of=/big", "bs=1M", fmt.Sprint("count=", mib), "conv=fsync")

	// The VM pauses and berth says why.
	start := time.Now()
	var st api.Status
	for {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		st, _ = client.Status(sctx)
		scancel()
		if st.State == api.StateDegraded && strings.Contains(st.Error, "is full") {
			break
		}
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("no Degraded state in 3 min: %s %q (host: %d MiB free)", st.State, st.Error, freeBytes(t, mnt)>>20)
		}
		time.Sleep(time.Second)
	}
	t.Logf("Degraded after %s: %s", time.Since(start).Round(100*time.Millisecond), st.Error)
	for _, want := range []string{"host disk holding " + inst.Dir + " is full", "MiB free", "resumes the VM by itself"} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("status error %q lacks %q", st.Error, want)
		}
	}
	if cli := e.status(name); cli.State != api.StateDegraded || cli.Error != st.Error {
		t.Errorf("berth status --json: %s %q", cli.State, cli.Error)
	}
	if out, _ := e.berth("status", name); !strings.Contains(out, "is full") {
		t.Errorf("berth status does not show the problem:\n%s", out)
	}
	var seen *api.Event
	for wait := time.Now(); seen == nil && time.Since(wait) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		for i := range events {
			if events[i].State == api.StateDegraded && strings.Contains(events[i].Error, "is full") {
				ev := events[i]
				seen = &ev
			}
		}
		mu.Unlock()
	}
	if seen == nil {
		t.Error("no Degraded event with the disk-full error")
	}
	// Nothing of the state dir was damaged while the disk was full.
	checkStateFiles(t, inst)
	// A graceful stop cannot finish now: refused at once, saying what to do; the VM stays.
	stopAt := time.Now()
	if out, err := e.berth("stop", name); err == nil || !strings.Contains(out, "cannot stop cleanly now") || !strings.Contains(out, "berth stop --force") {
		t.Errorf("berth stop while paused on a full disk: err=%v\n%s", err, out)
	}
	t.Logf("berth stop refused in %s", time.Since(stopAt).Round(10*time.Millisecond))
	if st := e.status(name); st.State != api.StateDegraded {
		t.Errorf("after the refused stop: %s %q", st.State, st.Error)
	}

	// Free the space: berth resumes the VM by itself and the guest's write completes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		st, _ = client.Status(sctx)
		scancel()
		if st.State == api.StateRunning {
			break
		}
		if time.Since(freed) > 2*time.Minute {
			t.Fatalf("not Running 2 min after the space was freed: %s %q", st.State, st.Error)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("Running %s after the space was freed", time.Since(freed).Round(100*time.Millisecond))
	if st.Error != "" {
		t.Errorf("error still shown: %q", st.Error)
	}
	// The event follows the state change; give the stream a moment to deliver it.
	var resumed string
	for wait := time.Now(); resumed == "" && time.Since(wait) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		for _, ev := range events {
			if strings.Contains(ev.Message, "resumed") {
				resumed = ev.Message
			}
		}
		mu.Unlock()
	}
	if resumed == "" {
		t.Error("no event says the VM resumed")
	}
	t.Logf("event: %s", resumed)

	if out := strings.TrimSpace(e.mustDocker("wait", "writer")); out != "0" {
		t.Errorf("the guest's write exited with %s", out)
	}
	if out := e.mustDocker("logs", "writer"); !strings.Contains(out, fmt.Sprintf("%d+0 records out", mib)) {
		t.Errorf("dd did not write everything: %s", out)
	}
	if out := strings.TrimSpace(e.mustDocker("run", "--rm", image, "echo", "ok")); out != "ok" {
		t.Errorf("docker run after the resume: %q", out)
	}
	// The guest never saw an I/O error: QEMU kept the failed writes and retried them.
	dmesg := e.mustBerth("shell", name, "--", "dmesg")
	for _, bad := range []string{"I/O error", "EXT4-fs error", "Buffer I/O", "Remounting filesystem read-only"} {
		if strings.Contains(dmesg, bad) {
			t.Errorf("guest kernel log has %q", bad)
		}
	}
	e.mustDocker("rm", "writer")
	checkStateFiles(t, inst)
	e.mustBerth("stop", name)
	checkStateFiles(t, inst)
}

// smallFS mounts a fresh ext4 file system of size under the env's root and unmounts it
// when the test ends, after stopping every instance of the env. It skips the test when the
// machine cannot loop-mount.
func smallFS(t *testing.T, e *env, size string) string {
	t.Helper()
	img := filepath.Join(e.root, "small.img")
	mnt := filepath.Join(e.root, "small")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"truncate", "-s", size, img}, {"mkfs.ext4", "-q", "-F", img}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Skipf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount a file system here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Stop the instance (and keep its logs on failure) while its dir still exists.
		e.teardown()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
		os.Remove(img)
	})
	return mnt
}

// freeBytes is what root may still write on the file system holding dir.
func freeBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bfree * uint64(st.Bsize)
}

// checkStateFiles parses the instance's config and recorded state: both are written
// atomically, so a full disk leaves the old or the new file, never a torn one.
func checkStateFiles(t *testing.T, inst *store.Instance) {
	t.Helper()
	b, err := os.ReadFile(inst.Path(store.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := store.ParseConfig(b); err != nil || cfg.Disk != 4 {
		t.Errorf("berth.yaml: %v (disk %d): %q", err, cfg.Disk, b)
	}
	b, err = os.ReadFile(inst.Path(store.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	var s store.State
	if err := json.Unmarshal(b, &s); err != nil || s.State == "" {
		t.Errorf("state.json: %v: %q", err, b)
	}
}
