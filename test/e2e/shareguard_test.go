//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// plantScript runs as root in a container on the share mounted at /s: it tries to plant
// privileges on the host (setuid/setgid binaries, a file given to another uid, a device
// node, a fifo), then does the ordinary things a project checkout needs.
const plantScript = `cd /s
cp /bin/busybox suid; echo "cp=$?"
chmod 4755 suid; echo "chmod-suid=$?"
cp /bin/busybox sgid; chmod 2755 sgid; echo "chmod-sgid=$?"
cp /bin/busybox /tmp/s && chmod 6755 /tmp/s && cp -p /tmp/s preserved; echo "cp-p=$?"
touch f; chown 1234:1234 f; echo "chown=$?"
mknod dev c 1 3; echo "mknod=$?"
mkfifo fifo; echo "mkfifo=$?"
touch plain; echo "touch=$?"
printf '#!/bin/sh\necho script-ran\n' > script.sh && chmod 0755 script.sh && ./script.sh
echo data > a.txt && mv a.txt b.txt && echo "rename=$?"
echo gone > del.txt && rm del.txt && echo "delete=$?"
mkdir -p d/e && echo x > d/e/y && chmod 1777 d && echo "dir=$?"
ls -lna /s
`

// TestShareGuard: whatever user runs berth, a container writing to a share cannot leave a
// setuid/setgid file, a file owned by another uid, a device node or a fifo on the host,
// and ordinary writes still work (docs/file-sharing.md, "Privileges through a share").
func TestShareGuard(t *testing.T) {
	t.Run("root", func(t *testing.T) {
		e := newEnv(t)
		share := filepath.Join(e.root, "share")
		if err := os.Mkdir(share, 0o755); err != nil {
			t.Fatal(err)
		}
		writeConfig(t, e, "default", fmt.Sprintf("shares:\n  - path: %q\n", share))
		e.mustBerth("start")
		defer e.berth("stop", "--force")
		e.busyboxImage(image)
		logMounts(t, e.mustBerth("mounts", "--json"))
		out := plant(e.mustDocker, share)
		checkShare(t, share, out, os.Getuid(), os.Getgid())
	})

	t.Run("user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("creating a second local user (useradd) needs root")
		}
		u := newLocalUser(t)
		share := filepath.Join(u.home, "share")
		u.mkdir(share)
		u.writeFile(filepath.Join(u.berthHome, "default", "berth.yaml"), fmt.Sprintf("shares:\n  - path: %q\n", share))
		u.mustRun(10*time.Minute, os.Getenv("BERTH_BIN"), "start")
		defer u.run(3*time.Minute, os.Getenv("BERTH_BIN"), "stop", "--force")
		// The image tarball is built as root (it compiles testsrv) and imported as the user.
		bb, err := exec.LookPath("busybox")
		if err != nil {
			t.Fatalf("busybox not found (apt-get install busybox-static): %v", err)
		}
		tarball := filepath.Join(u.root, "busybox.tar")
		if err := writeBusyboxTar(bb, tarball); err != nil {
			t.Fatal(err)
		}
		os.Chmod(tarball, 0o644)
		u.mustRun(5*time.Minute, "docker", "--context", "berth", "import", tarball, image)
		logMounts(t, u.mustRun(time.Minute, os.Getenv("BERTH_BIN"), "mounts", "--json"))
		out := plant(func(args ...string) string {
			return u.mustRun(5*time.Minute, "docker", append([]string{"--context", "berth"}, args...)...)
		}, share)
		checkShare(t, share, out, u.uid, u.gid)
	})
}

// plant runs plantScript as root in a container on the share, then writes a file as
// uid 1234 (which virtiofsd, unconfined, would create as that uid on the host), and
// returns the output.
func plant(docker func(args ...string) string, share string) string {
	out := docker("run", "--rm", "-v", share+":/s", image, "sh", "-c", plantScript)
	out += docker("run", "--rm", "--user", "1234:1234", "-v", share+":/s", image, "sh", "-c",
		`echo hi > /s/d/by-1234 && mkdir /s/d/dir-1234 && echo "user=$?"`)
	return out
}

func logMounts(t *testing.T, out string) {
	t.Helper()
	var mounts []api.Mount
	if err := json.Unmarshal([]byte(out), &mounts); err != nil || len(mounts) != 1 || mounts[0].State != "mounted" {
		t.Fatalf("mounts: %v: %s", err, out)
	}
	t.Logf("share type %s", mounts[0].Type)
}

// checkShare checks the share on the host after plantScript, whose output is out: every
// entry belongs to uid:gid, none is setuid/setgid, a device or a fifo, and the ordinary
// writes took effect.
func checkShare(t *testing.T, share, out string, uid, gid int) {
	t.Helper()
	n := 0
	filepath.WalkDir(share, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		n++
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		rel, _ := filepath.Rel(share, p)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s: owned by %d:%d on the host, want %d:%d", rel, st.Uid, st.Gid, uid, gid)
		}
		if st.Mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
			t.Errorf("%s: mode %o on the host has setuid/setgid", rel, st.Mode)
		}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK:
		default:
			t.Errorf("%s: file type %o on the host (a device, fifo or socket)", rel, st.Mode&syscall.S_IFMT)
		}
		return nil
	})
	t.Logf("%d entries checked", n)
	for _, name := range []string{"dev", "fifo"} {
		if _, err := os.Lstat(filepath.Join(share, name)); err == nil {
			t.Errorf("%s exists on the host", name)
		}
	}
	// Ordinary writes.
	for _, want := range []string{"cp=0", "touch=0", "script-ran", "rename=0", "delete=0", "dir=0", "user=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the container's output lacks %q", want)
		}
	}
	mode := func(name string) os.FileMode {
		st, err := os.Lstat(filepath.Join(share, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return 0
		}
		return st.Mode()
	}
	if m := mode("script.sh"); m != 0o755 {
		t.Errorf("script.sh has mode %v on the host, want -rwxr-xr-x", m)
	}
	if m := mode("d"); m != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("d has mode %v on the host, want drwxrwxrwt", m)
	}
	if b, err := os.ReadFile(filepath.Join(share, "b.txt")); err != nil || string(b) != "data\n" {
		t.Errorf("b.txt: %q, %v", b, err)
	}
	for _, gone := range []string{"a.txt", "del.txt"} {
		if _, err := os.Lstat(filepath.Join(share, gone)); err == nil {
			t.Errorf("%s still exists", gone)
		}
	}
	for _, name := range []string{"plain", "suid", "f", "d/by-1234", "d/dir-1234"} {
		if _, err := os.Lstat(filepath.Join(share, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// localUser is a throwaway local account that runs berth and the docker CLI, with its
// berth home, docker config and share in its home directory.
type localUser struct {
	t                testing.TB
	name, home, root string
	berthHome        string
	uid, gid         int
}

func newLocalUser(t *testing.T) *localUser {
	name := fmt.Sprintf("berthsg%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	u := &localUser{t: t, name: name}
	t.Cleanup(u.remove)
	pw, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	u.uid, _ = strconv.Atoi(pw.Uid)
	u.gid, _ = strconv.Atoi(pw.Gid)
	u.home = pw.HomeDir
	u.root = filepath.Join(u.home, "e2e")
	u.berthHome = filepath.Join(u.root, "b")
	u.mkdir(u.root)
	u.mkdir(u.berthHome)
	u.mkdir(filepath.Join(u.root, "d"))
	return u
}

// mkdir makes a directory owned by the user.
func (u *localUser) mkdir(p string) {
	u.t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		u.t.Fatal(err)
	}
	os.Chown(p, u.uid, u.gid)
}

func (u *localUser) writeFile(p, content string) {
	u.t.Helper()
	u.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		u.t.Fatal(err)
	}
	os.Chown(p, u.uid, u.gid)
}

// run runs a program as the user, with BERTH_E2E_ROOT kept so that test/run-e2e.sh finds
// what it leaves behind.
func (u *localUser) run(timeout time.Duration, prog string, args ...string) (string, error) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = u.home
	cmd.Env = []string{
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name, "PATH=" + os.Getenv("PATH"),
		"BERTH_HOME=" + u.berthHome, "DOCKER_CONFIG=" + filepath.Join(u.root, "d"),
		"BERTH_IMAGES=" + os.Getenv("BERTH_IMAGES"), "BERTH_E2E_ROOT=" + os.Getenv("BERTH_E2E_ROOT"),
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	u.t.Logf("$ (%s) %s %s\n%s", u.name, filepath.Base(prog), strings.Join(args, " "), out.String())
	return out.String(), err
}

func (u *localUser) mustRun(timeout time.Duration, prog string, args ...string) string {
	u.t.Helper()
	out, err := u.run(timeout, prog, args...)
	if err != nil {
		u.t.Fatalf("%s %s: %v", filepath.Base(prog), strings.Join(args, " "), err)
	}
	return out
}

// remove stops the user's instance if it still runs, dumps its logs after a failure and
// deletes the account and its home.
func (u *localUser) remove() {
	inst := filepath.Join(u.berthHome, "default")
	if u.t.Failed() {
		for _, f := range []string{"hostd.log", "console.log"} {
			b, _ := os.ReadFile(filepath.Join(inst, f))
			if len(b) > 16<<10 {
				b = b[len(b)-16<<10:]
			}
			u.t.Logf("==== %s/%s ====\n%s", u.name, f, b)
		}
	}
	if _, err := os.Stat(filepath.Join(inst, "hostd.pid")); err == nil {
		u.run(3*time.Minute, os.Getenv("BERTH_BIN"), "stop", "--force")
	}
	for i := 0; ; i++ {
		out, err := exec.Command("userdel", "-r", u.name).CombinedOutput()
		if err == nil {
			return
		}
		if i == 10 {
			u.t.Errorf("userdel %s: %v: %s", u.name, err, out)
			return
		}
		time.Sleep(time.Second) // the user's last processes are still exiting
	}
}
