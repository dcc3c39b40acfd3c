//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procWatch samples /proc every 100 ms and remembers, for one instance, how many VM
// processes (qemu-system with the instance directory in its command line) and host
// daemons (`berth hostd NAME` under this env's BERTH_HOME) ran at once, and which.
type procWatch struct {
	e    *env
	dir  string
	name string
	stop chan struct{}
	done chan struct{}

	mu                sync.Mutex
	maxVMs, maxHostds int
	vms, hostds       map[int]bool
}

func watchProcs(e *env, name string) *procWatch {
	w := &procWatch{e: e, dir: filepath.Join(e.home, name), name: name, stop: make(chan struct{}), done: make(chan struct{})}
	w.reset()
	go func() {
		defer close(w.done)
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *procWatch) reset() {
	w.mu.Lock()
	w.maxVMs, w.maxHostds = 0, 0
	w.vms, w.hostds = map[int]bool{}, map[int]bool{}
	w.mu.Unlock()
}

func (w *procWatch) sample() {
	var vms, hostds []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		cl := strings.Join(args, " ")
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		switch {
		case strings.Contains(cl, "qemu-system") && strings.Contains(cl, w.dir):
			vms = append(vms, pid)
		case len(args) >= 3 && args[len(args)-2] == "hostd" && args[len(args)-1] == w.name:
			envb, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
			if bytes.Contains(envb, []byte("BERTH_HOME="+w.e.home+"\x00")) {
				hostds = append(hostds, pid)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxVMs = max(w.maxVMs, len(vms))
	w.maxHostds = max(w.maxHostds, len(hostds))
	for _, p := range vms {
		w.vms[p] = true
	}
	for _, p := range hostds {
		w.hostds[p] = true
	}
}

// check fails t if more than one VM or daemon ever ran at once, and reports the counts.
func (w *procWatch) check(t *testing.T) (vms, hostds int) {
	t.Helper()
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("processes seen: %d VM(s) %v, %d daemon(s) %v; at most %d VM(s) and %d daemon(s) at once",
		len(w.vms), keys(w.vms), len(w.hostds), keys(w.hostds), w.maxVMs, w.maxHostds)
	if w.maxVMs > 1 {
		t.Errorf("%d VM processes of one instance ran at once", w.maxVMs)
	}
	if w.maxHostds > 1 {
		t.Errorf("%d host daemons of one instance ran at once", w.maxHostds)
	}
	return len(w.vms), len(w.hostds)
}

func (w *procWatch) close() {
	close(w.stop)
	<-w.done
}

func keys(m map[int]bool) []int {
	var k []int
	for p := range m {
		k = append(k, p)
	}
	return k
}

// berthProc is a `berth` command running in the background.
type berthProc struct {
	args []string
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  error
	t0   time.Time
	took time.Duration
	done chan struct{}
}

func (e *env) berthBackground(t *testing.T, args ...string) *berthProc {
	t.Helper()
	p := &berthProc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(os.Getenv("BERTH_BIN"), args...)
	p.cmd.Env = e.environ()
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.t0 = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		p.took = time.Since(p.t0)
		close(p.done)
	}()
	return p
}

func (p *berthProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *berthProc) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("berth %s did not finish within %s:\n%s", strings.Join(p.args, " "), within, p.out.String())
	}
	t.Logf("$ berth %s  (%v after %s)\n%s", strings.Join(p.args, " "), p.err, p.took.Round(time.Millisecond), p.out.String())
}

// loserMessage is what a start that lost the race says.
var loserMessage = regexp.MustCompile(`instance "default" is (already starting|already running|stopping) \((daemon )?pid \d+\)`)

// checkHostdLog checks that hostd.log is the whole story of one daemon's start: its lines
// from the first on (no holes from a truncation under a writer, no second daemon's "in use"
// exit), from the first phase on to what the caller wants (Running, the stop).
func checkHostdLog(t *testing.T, e *env, want ...string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "default", "hostd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("hostd.log has NUL bytes: it was truncated under a writer")
	}
	log := string(b)
	if strings.Contains(log, "in use by a running berth daemon") {
		t.Errorf("hostd.log holds a second daemon's exit")
	}
	if !strings.HasPrefix(log, "time=") {
		t.Errorf("hostd.log does not begin with a line of the daemon's")
	}
	at := 0
	for _, w := range append([]string{`msg="phase done" instance=default phase=prepare`}, want...) {
		i := strings.Index(log[at:], w)
		if i < 0 {
			t.Errorf("hostd.log lacks %q after offset %d", w, at)
			break
		}
		at += i
	}
	if t.Failed() {
		t.Logf("hostd.log:\n%s", log)
	}
}

// TestConcurrentStart: eight `berth start` of one instance at once and a `berth stop`
// give one daemon and one VM at most, a clear message for every loser and the winner's
// log intact; `berth stop --force` during a boot returns within 5 s. Nothing is left.
func TestConcurrentStart(t *testing.T) {
	e := newEnv(t)
	w := watchProcs(e, "default")
	defer w.close()

	t.Run("8 starts and a stop", func(t *testing.T) {
		w.reset()
		const n = 8
		starts := make([]*berthProc, n)
		for i := range starts {
			starts[i] = e.berthBackground(t, "start")
		}
		// The stop comes once the race is decided (the losers are gone, which takes well
		// under a second) and the winner is booting, at least 3 s after the starts.
		t0 := time.Now()
		for {
			exited := 0
			for _, p := range starts {
				if p.exited() {
					exited++
				}
			}
			if exited >= n-1 && time.Since(t0) > 3*time.Second || time.Since(t0) > time.Minute {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop := e.berthBackground(t, "stop")
		stop.wait(t, 3*time.Minute)
		for _, p := range starts {
			p.wait(t, 3*time.Minute)
		}

		winners, reached := 0, false
		for i, p := range starts {
			out := p.out.String()
			if strings.Contains(out, `Starting "default"`) {
				winners++
				reached = strings.Contains(out, "Running")
				if p.err == nil && !strings.Contains(out, "Running") {
					t.Errorf("start %d succeeded without reaching Running:\n%s", i, out)
				}
				if p.err != nil && !strings.Contains(out, "stopped during start") {
					t.Errorf("the winner failed other than by the stop: %v\n%s", p.err, out)
				}
				continue
			}
			if p.err == nil || !loserMessage.MatchString(out) {
				t.Errorf("loser %d: err=%v, no clear message:\n%s", i, p.err, out)
			}
			if p.took > 30*time.Second {
				t.Errorf("loser %d took %s to give up", i, p.took)
			}
		}
		if winners != 1 {
			t.Errorf("%d starts went ahead, want 1", winners)
		}
		if stop.err != nil {
			t.Errorf("stop during the start: %v\n%s", stop.err, stop.out.String())
		}
		vms, hostds := w.check(t)
		if vms > 1 || hostds > 1 {
			t.Errorf("%d VMs and %d daemons over the whole race, want 1 each", vms, hostds)
		}
		if reached {
			checkHostdLog(t, e, "phase=socket")
		} else {
			checkHostdLog(t, e, "stop requested during boot")
		}

		if out, err := e.berth("stop"); err != nil || !strings.Contains(out, "not running") { // done already: exit 0
			t.Errorf("second stop: err=%v\n%s", err, out)
		}
		e.assertNothingRunning(t, "default")
	})

	t.Run("stop --force during boot", func(t *testing.T) {
		w.reset()
		start := e.berthBackground(t, "start")
		waitFor(t, "the VM process exists", 2*time.Minute, func() bool { return vmPIDOrZero(e) > 0 })
		time.Sleep(time.Second) // well into the boot
		t0 := time.Now()
		out, err := e.berth("stop", "--force")
		took := time.Since(t0)
		t.Logf("stop --force during boot took %s", took.Round(time.Millisecond))
		if err != nil {
			t.Errorf("stop --force during boot: %v\n%s", err, out)
		}
		if took > 5*time.Second {
			t.Errorf("stop --force during boot took %s, want at most 5s", took.Round(time.Millisecond))
		}
		start.wait(t, time.Minute)
		if start.err == nil {
			t.Errorf("start succeeded although stopped during boot:\n%s", start.out.String())
		} else if !strings.Contains(start.out.String(), "stopped during start") {
			t.Errorf("the start does not say it was stopped:\n%s", start.out.String())
		}
		w.check(t)
		checkHostdLog(t, e, "stop requested during boot")
		e.assertNothingRunning(t, "default")
	})
}
