package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// cli is one run of the berth command tree: what it printed and the exit status and
// message main would give.
type cli struct {
	out, errOut string
	code        int
	msg         string
}

// berthCLI runs the cobra root with args and stdin, capturing its output; the exit status
// is what main would exit with.
func berthCLI(t *testing.T, stdin string, args ...string) cli {
	t.Helper()
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	var r cli
	if err := root.ExecuteContext(t.Context()); err != nil {
		r.code, r.msg = exitCode(err)
	}
	r.out, r.errOut = out.String(), errb.String()
	t.Logf("$ berth %s → %d\n%s%s%s", strings.Join(args, " "), r.code, r.out, r.errOut, r.msg)
	return r
}

// testHome gives the test its own berth root and docker config.
func testHome(t *testing.T) (home, dockerCfg string) {
	home, dockerCfg = t.TempDir(), t.TempDir()
	t.Setenv("BERTH_HOME", home)
	t.Setenv("DOCKER_CONFIG", dockerCfg)
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("DOCKER_CONTEXT", "")
	os.Unsetenv("DOCKER_HOST")
	os.Unsetenv("DOCKER_CONTEXT")
	return home, dockerCfg
}

// fakeRunning makes inst look running to the CLI: this process holds the daemon lock and
// the state file says Running.
func fakeRunning(t *testing.T, inst *store.Instance) {
	t.Helper()
	lock, err := inst.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lock.Release)
	inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid()})
}

func newInstance(t *testing.T, name string) *store.Instance {
	t.Helper()
	inst, err := store.Create(name, store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func (r cli) must(t *testing.T, code int, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d (%s)", r.code, code, r.msg)
	}
	all := r.out + r.errOut + r.msg
	for _, p := range parts {
		if !strings.Contains(all, p) {
			t.Errorf("output lacks %q:\n%s", p, all)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	testHome(t)
	r := berthCLI(t, "", "--version")
	r.must(t, 0)
	if want := fmt.Sprintf("berth %s %s/%s\n", version, runtime.GOOS, runtime.GOARCH); r.out != want {
		t.Errorf("--version printed %q, want %q", r.out, want)
	}
}

// TestStopWhenStopped: stopping a stopped instance is done already: exit 0.
func TestStopWhenStopped(t *testing.T) {
	testHome(t)
	newInstance(t, "dev")
	berthCLI(t, "", "stop", "dev").must(t, 0, `Instance "dev" is not running: nothing to stop`)
	berthCLI(t, "", "stop", "--force", "dev").must(t, 0, "nothing to stop")
	berthCLI(t, "", "stop", "nosuch").must(t, 1, `instance "nosuch": instance not found`)
}

// TestStartActivatesContext: a start (here of a running instance, which does nothing
// else) makes the instance's docker context current, keeping config.json's other keys;
// --activate=false leaves the current context alone.
func TestStartActivatesContext(t *testing.T) {
	_, dc := testHome(t)
	inst := newInstance(t, "dev")
	fakeRunning(t, inst)
	ctxName := dockerctx.Name("dev")
	if err := dockerctx.Ensure(ctxName, "unix://"+inst.Path(store.DockerSock), "test"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dc, "config.json"), []byte(`{"auths":{"r.example":{}},"currentContext":"other"}`), 0o600)

	berthCLI(t, "", "start", "dev", "--activate=false").must(t, 0, "already running")
	if cur, _ := dockerctx.Current(); cur != "other" {
		t.Errorf("--activate=false changed the context to %q", cur)
	}
	berthCLI(t, "", "start", "dev").must(t, 0, "already running", `Docker context "berth-dev" is now current (it was "other")`)
	if cur, _ := dockerctx.Current(); cur != ctxName {
		t.Errorf("current context %q, want %q", cur, ctxName)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dc, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["auths"] == nil {
		t.Errorf("config.json lost its other keys: %s", b)
	}
	if st, _ := os.Stat(filepath.Join(dc, "config.json")); st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v", st.Mode().Perm())
	}

	// DOCKER_HOST overrides contexts: say so.
	t.Setenv("DOCKER_HOST", "unix:///elsewhere.sock")
	berthCLI(t, "", "start", "dev").must(t, 0, "DOCKER_HOST=unix:///elsewhere.sock is set")
}

// TestUseCreatesConfig: with no config.json yet, activating creates one (0600 in 0700).
func TestUseCreatesConfig(t *testing.T) {
	_, dc := testHome(t)
	dc = filepath.Join(dc, "fresh")
	t.Setenv("DOCKER_CONFIG", dc)
	if err := dockerctx.Use("berth"); err == nil {
		t.Error("Use of a context that does not exist")
	}
	dockerctx.Ensure("berth", "unix:///x.sock", "t")
	if err := dockerctx.Use("berth"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dc, "config.json"))
	if err != nil || !strings.Contains(string(b), `"currentContext": "berth"`) {
		t.Fatalf("config.json: %s %v", b, err)
	}
	// A broken config.json is not overwritten.
	os.WriteFile(filepath.Join(dc, "config.json"), []byte("{broken"), 0o600)
	if err := dockerctx.Use("berth"); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Use over a broken config.json: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dc, "config.json")); string(b) != "{broken" {
		t.Errorf("broken config.json rewritten: %s", b)
	}
}

// TestDeleteUnsetsContext: delete drops the instance's context and unsets it only if it
// was current; other contexts stay.
func TestDeleteUnsetsContext(t *testing.T) {
	_, dc := testHome(t)
	for _, n := range []string{"a", "b"} {
		inst := newInstance(t, n)
		dockerctx.Ensure(dockerctx.Name(n), "unix://"+inst.Path(store.DockerSock), "t")
	}
	dockerctx.Ensure("mine", "tcp://127.0.0.1:2375", "the user's")
	dockerctx.Use(dockerctx.Name("a"))
	berthCLI(t, "", "delete", "b").must(t, 0, `Deleted "b"`)
	if cur, _ := dockerctx.Current(); cur != "berth-a" {
		t.Errorf("deleting b changed the current context to %q", cur)
	}
	berthCLI(t, "", "delete", "a").must(t, 0, `Deleted "a"`)
	if cur, _ := dockerctx.Current(); cur != "" {
		t.Errorf("current context %q after deleting its instance", cur)
	}
	if h, _ := dockerctx.Host("mine"); h != "tcp://127.0.0.1:2375" {
		t.Errorf("another context was touched: %q", h)
	}
	if h, _ := dockerctx.Host("berth-a"); h != "" {
		t.Errorf("context berth-a survived: %q", h)
	}
	b, _ := os.ReadFile(filepath.Join(dc, "config.json"))
	if strings.Contains(string(b), "currentContext") {
		t.Errorf("config.json: %s", b)
	}
}

// TestDeleteBrokenAndKeptData: delete works on an instance with a broken config and on
// the data disk a delete kept; --data asks first, and without a terminal needs --force.
func TestDeleteBrokenAndKeptData(t *testing.T) {
	home, _ := testHome(t)
	old := isTerminal
	t.Cleanup(func() { isTerminal = old })

	// Broken: berth.yaml that does not parse.
	inst := newInstance(t, "broken")
	os.WriteFile(inst.Path(store.ConfigFile), []byte("cpus: [\n"), 0o600)
	os.WriteFile(inst.Path(store.DataDisk), []byte("disk"), 0o600)
	r := berthCLI(t, "", "list")
	r.must(t, 0)
	if !regexp.MustCompile(`broken\s+Broken`).MatchString(r.out) {
		t.Errorf("list:\n%s", r.out)
	}
	berthCLI(t, "", "delete", "broken").must(t, 0, `Deleted "broken"; its images, containers and volumes are kept`)

	// Kept data: listed as such; delete alone says so and exits 0.
	r = berthCLI(t, "", "list")
	if !strings.Contains(r.out, "broken  "+StateDataOnly) {
		t.Errorf("list after delete:\n%s", r.out)
	}
	berthCLI(t, "", "delete", "broken").must(t, 0, "only its data disk is kept", "berth delete --data broken")

	// --data with no terminal and no --force: refused, nothing removed.
	isTerminal = func(any) bool { return false }
	berthCLI(t, "", "delete", "--data", "broken").must(t, 1, "needs confirmation", "--force")
	if _, err := os.Stat(filepath.Join(home, "broken", store.DataDisk)); err != nil {
		t.Fatal("the data went without confirmation")
	}
	// On a terminal: "n" keeps it, "y" deletes it.
	isTerminal = func(any) bool { return true }
	berthCLI(t, "n\n", "delete", "--data", "broken").must(t, 1, "[y/N]", "cancelled")
	if _, err := os.Stat(filepath.Join(home, "broken", store.DataDisk)); err != nil {
		t.Fatal("the data went after a no")
	}
	berthCLI(t, "y\n", "delete", "--data", "broken").must(t, 0, `Deleted "broken" and its data`)
	if _, err := os.Stat(filepath.Join(home, "broken")); !os.IsNotExist(err) {
		t.Errorf("instance dir left: %v", err)
	}

	// --force skips the question, also without a terminal; a half-created dir goes too.
	isTerminal = func(any) bool { return false }
	os.MkdirAll(filepath.Join(home, "half"), 0o700)
	os.WriteFile(filepath.Join(home, "half", store.DataDisk), []byte("d"), 0o600)
	os.WriteFile(filepath.Join(home, "half", "junk"), []byte("j"), 0o600)
	berthCLI(t, "", "delete", "-f", "--data", "half").must(t, 0, `Deleted "half" and its data`)
	if _, err := os.Stat(filepath.Join(home, "half")); !os.IsNotExist(err) {
		t.Errorf("half-created dir left: %v", err)
	}
	berthCLI(t, "", "delete", "nosuch").must(t, 1, "instance not found")
}

// TestRestartChecksFlagsFirst: a bad flag fails before anything is stopped.
func TestRestartChecksFlagsFirst(t *testing.T) {
	testHome(t)
	inst := newInstance(t, "dev")
	fakeRunning(t, inst) // no control socket: a stop attempt would fail differently
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"restart", "dev", "--cpus", "0"}, []string{"cpus: 0 is out of range", "from 1 to 256"}},
		{[]string{"restart", "dev", "-m", "abc"}, []string{`memory: "abc" is not allowed`, "fractions allowed"}},
		{[]string{"restart", "dev", "--accel", "xen"}, []string{`accel: "xen" is not allowed`}},
		{[]string{"restart", "dev", "-d", "10"}, []string{"disk: 10 GiB is smaller than the current 64 GiB"}},
		{[]string{"restart", "dev", "--env", "=x"}, []string{"--env \"=x\": want KEY=VALUE"}},
		{[]string{"restart", "dev", "-V", "/no/such/dir"}, []string{"/no/such/dir"}},
	} {
		berthCLI(t, "", tt.args...).must(t, 1, tt.want...)
		if inst.DaemonPID() != os.Getpid() || inst.ReadState().State != api.StateRunning {
			t.Fatalf("%v touched the running instance", tt.args)
		}
	}
}

// TestStartFlags: the settings flags become the config: memory in GiB with fractions,
// mounts with :ro, dns and env.
func TestStartFlags(t *testing.T) {
	testHome(t)
	dir := t.TempDir()
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	addStartFlags(cmd)
	if err := cmd.ParseFlags([]string{"-c", "3", "-m", "1.5", "-d", "80", "-V", dir + ":ro", "-V", "~", "--dns", "1.1.1.1,9.9.9.9", "--env", "TZ=UTC", "--env", "A=b=c"}); err != nil {
		t.Fatal(err)
	}
	a, err := flagAssignments(cmd)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := store.Set(store.DefaultConfig().Marshal(), a)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if cfg.CPUs != 3 || cfg.MemoryMiB() != 1536 || cfg.Disk != 80 || len(cfg.Shares) != 2 ||
		cfg.Shares[0].Path != dir || !cfg.Shares[0].ReadOnly || cfg.Shares[1].Path != home || cfg.Shares[1].ReadOnly ||
		strings.Join(cfg.DNS, " ") != "1.1.1.1 9.9.9.9" || cfg.Env["TZ"] != "UTC" || cfg.Env["A"] != "b=c" {
		t.Errorf("config %+v", cfg)
	}
	// Every settings flag has a short or long form as colima's.
	for long, short := range map[string]string{"cpus": "c", "memory": "m", "disk": "d", "mount": "V"} {
		if f := cmd.Flags().Lookup(long); f == nil || f.Shorthand != short {
			t.Errorf("--%s has no -%s", long, short)
		}
	}
}

// TestConfigCommands: set says what a change needs, refuses bad values without touching
// the file, keeps comments; get and show print values.
func TestConfigCommands(t *testing.T) {
	testHome(t)
	inst := newInstance(t, "default")
	doc := "# mine\ncpus: 2 # keep this\nmemory: 2\n"
	os.WriteFile(inst.Path(store.ConfigFile), []byte(doc), 0o600)

	berthCLI(t, "", "config", "set", "cpus=0").must(t, 1, "cpus: 0 is out of range: want a whole number from 1 to 256")
	berthCLI(t, "", "config", "set", "memory=abc").must(t, 1, `memory: "abc" is not allowed: want a number of GiB from 1 to 1024`)
	berthCLI(t, "", "config", "set", "nope=1").must(t, 1, `unknown key "nope"`)
	if b, _ := os.ReadFile(inst.Path(store.ConfigFile)); string(b) != doc {
		t.Fatalf("a refused set changed the file:\n%s", b)
	}

	berthCLI(t, "", "config", "set", "cpus=3", "memory=2.5").must(t, 0, "Saved cpus, memory", "next `berth start default`")
	b, _ := os.ReadFile(inst.Path(store.ConfigFile))
	if !strings.Contains(string(b), "# mine\ncpus: 3 # keep this\nmemory: 2.5\n") {
		t.Errorf("file:\n%s", b)
	}
	berthCLI(t, "", "config", "set", "cpus=3").must(t, 0, "No change")
	r := berthCLI(t, "", "config", "get", "memory")
	if r.code != 0 || r.out != "2.5\n" {
		t.Errorf("get memory: %q", r.out)
	}
	r = berthCLI(t, "", "config", "show", "--json")
	var shown map[string]any
	if err := json.Unmarshal([]byte(r.out), &shown); err != nil || shown["cpus"] != 3.0 || shown["memory"] != 2.5 {
		t.Errorf("show --json: %v %s", err, r.out)
	}
	r = berthCLI(t, "", "config", "show")
	if !strings.Contains(r.out, "cpus: 3\n") || !strings.Contains(r.out, "bootTimeout: 600\n") {
		t.Errorf("show:\n%s", r.out)
	}
	berthCLI(t, "", "config", "keys").must(t, 0, "memory", "fractions allowed")

	// Running: the change needs a restart, and says so.
	fakeRunning(t, inst)
	berthCLI(t, "", "config", "set", "cpus=4").must(t, 0, "restart needed", "berth restart default")

	// A new instance: set stores its settings for the first start.
	berthCLI(t, "", "-p", "fresh", "config", "set", "memory=1.5").must(t, 0, `new instance "fresh"`)
	fresh, err := store.Open("fresh")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := fresh.Config(); c.MemoryMiB() != 1536 {
		t.Errorf("fresh memory %v", c.Memory)
	}
}

// TestConfigEdit: the edited copy replaces berth.yaml only when valid.
func TestConfigEdit(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("editor script is a shell script")
	}
	testHome(t)
	inst := newInstance(t, "default")
	before, _ := os.ReadFile(inst.Path(store.ConfigFile))
	script := filepath.Join(t.TempDir(), "ed")
	os.WriteFile(script, []byte("#!/bin/sh\nsed -i 's/^cpus: .*/cpus: '\"$NEWCPUS\"'/' \"$1\"\n"), 0o700)
	t.Setenv("VISUAL", "")
	t.Setenv("EDITOR", script)
	old := isTerminal
	t.Cleanup(func() { isTerminal = old })
	isTerminal = func(any) bool { return false }

	t.Setenv("NEWCPUS", "0")
	berthCLI(t, "", "config", "edit").must(t, 1, "cpus: 0 is out of range", "is unchanged")
	if b, _ := os.ReadFile(inst.Path(store.ConfigFile)); !bytes.Equal(b, before) {
		t.Fatalf("invalid edit saved:\n%s", b)
	}
	t.Setenv("NEWCPUS", "1")
	berthCLI(t, "", "config", "edit").must(t, 0, "Saved cpus")
	if c, _ := inst.Config(); c.CPUs != 1 {
		t.Errorf("cpus %d after edit", c.CPUs)
	}
	if m, _ := filepath.Glob(filepath.Join(inst.Dir, ".berth.edit-*")); len(m) != 0 {
		t.Errorf("edit copies left: %v", m)
	}
}

// TestStatusJSON: errors come as JSON with a non-zero exit; a stopped instance exits 3.
func TestStatusJSON(t *testing.T) {
	testHome(t)
	r := berthCLI(t, "", "status", "--json", "nosuch")
	var e map[string]string
	if err := json.Unmarshal([]byte(r.out), &e); err != nil || e["name"] != "nosuch" || !strings.Contains(e["error"], "instance not found") {
		t.Errorf("status --json of a missing instance: %v %q", err, r.out)
	}
	if r.code != 1 || r.msg != "" {
		t.Errorf("exit %d msg %q, want 1 and nothing on stderr", r.code, r.msg)
	}
	newInstance(t, "dev")
	r = berthCLI(t, "", "status", "--json", "dev")
	var st api.Status
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || st.State != api.StateStopped || st.MemoryMiB != 2048 {
		t.Errorf("status --json: %v %s", err, r.out)
	}
	if r.code != 3 {
		t.Errorf("stopped: exit %d, want 3", r.code)
	}
	berthCLI(t, "", "status", "dev").must(t, 3, "State:", "Stopped", "2 GiB memory")
}

func TestListQuiet(t *testing.T) {
	testHome(t)
	newInstance(t, "b")
	newInstance(t, "a")
	r := berthCLI(t, "", "list", "-q")
	if r.code != 0 || r.out != "a\nb\n" {
		t.Errorf("list -q: %q", r.out)
	}
	r = berthCLI(t, "", "ls", "--json")
	var all []api.Status
	if err := json.Unmarshal([]byte(r.out), &all); err != nil || len(all) != 2 {
		t.Errorf("ls --json: %v %s", err, r.out)
	}
}

// TestCompletion: instance names, log names, setting keys and flag values complete;
// files never do where a name is wanted.
func TestCompletion(t *testing.T) {
	testHome(t)
	newInstance(t, "alpha")
	newInstance(t, "beta")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"status", ""}, []string{"alpha", "beta"}},
		{[]string{"start", ""}, []string{"alpha", "beta"}},
		{[]string{"delete", ""}, []string{"alpha", "beta"}},
		{[]string{"shell", ""}, []string{"alpha", "beta"}},
		{[]string{"-p", ""}, []string{"alpha", "beta"}},
		{[]string{"logs", ""}, []string{"hostd", "console", "agent", "engine"}},
		{[]string{"start", "--accel", ""}, []string{"auto", "kvm", "hvf", "whpx", "tcg"}},
		{[]string{"start", "--arch", ""}, []string{"amd64", "arm64"}},
		{[]string{"restart", "--arch", ""}, []string{"amd64", "arm64"}},
		{[]string{"config", "set", ""}, []string{"cpus=", "memory="}},
		{[]string{"config", "get", ""}, []string{"cpus", "shares"}},
	} {
		r := berthCLI(t, "", append([]string{"__complete"}, tt.args...)...)
		lines := strings.Split(strings.TrimSpace(r.out), "\n")
		directive := lines[len(lines)-1]
		var got []string
		for _, l := range lines[:len(lines)-1] {
			v, _, _ := strings.Cut(l, "\t")
			got = append(got, v)
		}
		for _, w := range tt.want {
			if !strings.Contains(" "+strings.Join(got, " ")+" ", " "+w+" ") {
				t.Errorf("complete %v: %v lacks %q", tt.args, got, w)
			}
		}
		var d int
		fmt.Sscanf(directive, ":%d", &d)
		if cobra.ShellCompDirective(d)&cobra.ShellCompDirectiveNoFileComp == 0 {
			t.Errorf("complete %v: files complete too (directive %s)", tt.args, directive)
		}
	}
}

// TestStillBooting: during a long phase a line comes at least every interval.
func TestStillBooting(t *testing.T) {
	var out syncBuffer
	p := &startProgress{out: &out, t0: time.Now()}
	stop := p.tick(100 * time.Millisecond)
	time.Sleep(250 * time.Millisecond)
	if out.String() != "" {
		t.Errorf("printed before the daemon's first event: %q", out.String())
	}
	p.event(api.Event{State: api.StateStarting, Phase: "boot"})
	time.Sleep(350 * time.Millisecond)
	p.event(api.Event{State: api.StateStarting, Phase: "boot", Done: true, Message: "up"})
	stop()
	s := out.String()
	if n := strings.Count(s, "still booting: boot (for "); n < 2 {
		t.Errorf("%d still-booting lines in:\n%s", n, s)
	}
	if !strings.HasSuffix(s, "boot     up\n") {
		t.Errorf("phase line missing:\n%s", s)
	}
}

type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuffer) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

// TestSharedCwd: the shell starts in the current directory only when a mounted share
// holds it.
func TestSharedCwd(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cwd, _ := os.Getwd()
	for _, tt := range []struct {
		mounts []api.Mount
		want   string
	}{
		{[]api.Mount{{Path: filepath.Dir(cwd), State: "mounted"}}, cwd},
		{[]api.Mount{{Path: cwd, State: "mounted"}}, cwd},
		{[]api.Mount{{Path: filepath.Dir(cwd), State: "failed"}}, ""},
		{[]api.Mount{{Path: cwd + "x", State: "mounted"}}, ""},
		{nil, ""},
	} {
		if got := sharedCwd(tt.mounts); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.mounts, got, tt.want)
		}
	}
}

// TestCLIDocInStep: every command and flag in --help is in docs/cli.md.
func TestCLIDocInStep(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "cli.md"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if c.HasParent() && c.Runnable() {
			path := strings.TrimPrefix(c.CommandPath(), "berth ")
			if !bytes.Contains(doc, []byte("`berth "+path)) {
				t.Errorf("docs/cli.md lacks `berth %s`", path)
			}
			c.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if f.Hidden || f.Name == "help" {
					return
				}
				if !bytes.Contains(doc, []byte("--"+f.Name)) {
					t.Errorf("docs/cli.md lacks %s's --%s", c.CommandPath(), f.Name)
				}
			})
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRootCommand())
}

// TestStateFormat (RELIABILITY item 17): an instance directory written by a newer berth
// is refused alone, with what to do, while the others keep working; a directory from
// before format.json existed is upgraded (the file written) by the next start's checks.
func TestStateFormat(t *testing.T) {
	home, _ := testHome(t)
	newInstance(t, "old")            // as an older berth left it: no format.json
	newer := newInstance(t, "newer") // as a newer berth left it
	os.WriteFile(newer.Path(store.FormatFile), []byte(`{"format":99,"writtenBy":"berth v9.0.0"}`), 0o600)
	cfgBefore, _ := os.ReadFile(newer.Path(store.ConfigFile))

	r := berthCLI(t, "", "list")
	r.must(t, 0)
	if !regexp.MustCompile(`newer\s+Incompatible`).MatchString(r.out) || !regexp.MustCompile(`old\s+Stopped`).MatchString(r.out) {
		t.Errorf("list:\n%s", r.out)
	}
	berthCLI(t, "", "status", "newer").must(t, 3, "berth v9.0.0", "upgrade berth")
	berthCLI(t, "", "start", "newer").must(t, 1, "written by a newer berth", "upgrade berth")
	berthCLI(t, "", "config", "set", "-p", "newer", "cpus=1").must(t, 1, "written by a newer berth")
	if b, _ := os.ReadFile(newer.Path(store.ConfigFile)); !bytes.Equal(b, cfgBefore) {
		t.Errorf("berth.yaml of the newer instance changed:\n%s", b)
	}
	if b, _ := os.ReadFile(newer.Path(store.FormatFile)); !strings.Contains(string(b), `"format":99`) {
		t.Errorf("format.json of the newer instance changed: %s", b)
	}

	// The older one: readable, and brought up to this format.
	old, _ := store.Open("old")
	if err := old.UpgradeFormat(); err != nil {
		t.Fatal(err)
	}
	if r, err := old.ReadFormat(); err != nil || r.Format != store.Format {
		t.Fatalf("after the upgrade: %+v, %v", r, err)
	}
	berthCLI(t, "", "config", "set", "-p", "old", "cpus=1").must(t, 0)

	// A damaged format.json says which file and what to do.
	os.WriteFile(filepath.Join(home, "old", store.FormatFile), []byte("{"), 0o600)
	berthCLI(t, "", "start", "old").must(t, 1, "format.json is damaged", "remove the file")

	// Deleting needs no reading: a newer instance can be removed.
	berthCLI(t, "", "delete", "-f", "--data", "newer").must(t, 0, `Deleted "newer"`)
}
