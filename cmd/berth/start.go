package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newStartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start [INSTANCE]",
		Short: "Start an instance, creating it on first use; its docker context becomes current",
		Long: `Start an instance, creating it on first use. Flags set its settings (see docs/config.md);
for an instance that exists they change its berth.yaml, which needs it stopped (use
berth restart with the flags on a running one). Starting a running instance does nothing.
The instance's docker context becomes docker's current one unless --activate=false.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE:              startAction,
	}
	addStartFlags(cmd)
	return cmd
}

// addStartFlags adds the settings a start may change (start and restart share them).
// Their values are checked by the same code as `berth config set` (store.Set).
func addStartFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringP("cpus", "c", "", "number of CPUs")
	f.StringP("memory", "m", "", "memory in GiB; fractions allowed (1.5 is 1536 MiB)")
	f.StringP("disk", "d", "", "data disk size in GiB (it can only grow)")
	f.String("arch", "", "guest architecture: amd64 or arm64")
	f.String("accel", "", "accelerator: auto, kvm, hvf, whpx or tcg")
	f.StringArrayP("mount", "V", nil, "share a host directory at the same path in the VM, PATH or PATH:ro (repeatable; replaces the shares in berth.yaml)")
	f.StringSlice("dns", nil, "name servers for the guest and its containers (IP addresses; repeatable or comma-separated)")
	f.StringArray("env", nil, "KEY=VALUE in the guest engine's environment (repeatable; KEY= removes KEY)")
	f.Bool("activate", true, "make the instance's docker context docker's current one")
	cmd.RegisterFlagCompletionFunc("arch", fixedValues("amd64", "arm64"))
	cmd.RegisterFlagCompletionFunc("accel", fixedValues("auto", "kvm", "hvf", "whpx", "tcg"))
	cmd.RegisterFlagCompletionFunc("mount", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return nil, cobra.ShellCompDirectiveFilterDirs
	})
	for _, n := range []string{"cpus", "memory", "disk", "dns", "env"} {
		cmd.RegisterFlagCompletionFunc(n, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		})
	}
}

// flagAssignments turns the settings flags the user gave into `berth config set`
// assignments, so both are checked by the same code.
func flagAssignments(cmd *cobra.Command) ([]string, error) {
	f := cmd.Flags()
	var a []string
	for _, n := range []string{"cpus", "memory", "disk", "arch", "accel"} {
		if f.Changed(n) {
			v, _ := f.GetString(n)
			if strings.TrimSpace(v) == "" {
				k, _ := store.LookupKey(n)
				return nil, fmt.Errorf("--%s is empty: want %s", n, k.Allowed)
			}
			a = append(a, n+"="+v)
		}
	}
	if f.Changed("mount") {
		vals, _ := f.GetStringArray("mount")
		shares := []fileshare.Share{}
		for _, v := range vals {
			p, ro := v, ""
			if s, ok := strings.CutSuffix(v, ":ro"); ok {
				p, ro = s, ":ro"
			} else if s, ok := strings.CutSuffix(v, ":rw"); ok {
				p = s
			}
			if p != "~" && !strings.HasPrefix(p, "~/") && !filepath.IsAbs(p) {
				abs, err := filepath.Abs(p)
				if err != nil {
					return nil, err
				}
				p = abs
			}
			sh, err := store.ParseShare(p + ro)
			if err != nil {
				return nil, fmt.Errorf("--mount %s: %w", v, err)
			}
			shares = append(shares, sh)
		}
		b, _ := json.Marshal(shares)
		a = append(a, "shares="+string(b))
	}
	if f.Changed("dns") {
		vals, _ := f.GetStringSlice("dns")
		if vals == nil {
			vals = []string{}
		}
		b, _ := json.Marshal(vals)
		a = append(a, "dns="+string(b))
	}
	if f.Changed("env") {
		vals, _ := f.GetStringArray("env")
		for _, v := range vals {
			k, _, ok := strings.Cut(v, "=")
			if !ok || k == "" || strings.Contains(k, ".") {
				return nil, fmt.Errorf("--env %q: want KEY=VALUE, KEY made of letters, digits and _", v)
			}
			a = append(a, "env."+v)
		}
	}
	return a, nil
}

// stillEvery is how long a start stays silent at most: during a long phase it prints a
// "still booting" line this often.
var stillEvery = 10 * time.Second

func startAction(cmd *cobra.Command, args []string) error {
	name, err := instanceName(cmd, args)
	if err != nil {
		return err
	}
	assign, err := flagAssignments(cmd)
	if err != nil {
		return err
	}
	activate, _ := cmd.Flags().GetBool("activate")
	inst, err := store.Open(name)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		// Check the flags before anything is created, then create the instance with them
		// (store.Create keeps a config that a concurrent start wrote first).
		cfg, _, err := store.Set(store.DefaultConfig().Marshal(), assign)
		if err != nil {
			return fmt.Errorf("invalid settings: %w", err)
		}
		if inst, err = store.Create(name, cfg); err != nil {
			return err
		}
	case err != nil:
		return err
	}

	// From here on this start holds the instance's start lock: a second start (another
	// CLI, the tray) or a delete fails at once with a clear message instead of rewriting
	// the config, truncating the daemon's log or spawning a second daemon.
	starter, err := instance.LockStart(inst)
	if err != nil {
		return err
	}
	defer starter.Release()

	doc, err := os.ReadFile(inst.Path(store.ConfigFile))
	if err != nil {
		return err
	}
	cur, err := inst.Config()
	if err != nil {
		return configError(err, name)
	}
	cfg, text, err := store.Set(doc, assign)
	if err != nil {
		return fmt.Errorf("invalid settings: %w", err)
	}
	changed := !bytes.Equal(cfg.Marshal(), cur.Marshal())
	out := cmd.OutOrStdout()
	if err := starter.Busy(cmd.Context()); err != nil {
		if errors.Is(err, instance.ErrRunning) {
			if changed {
				return fmt.Errorf("instance %q is running; its settings change with a restart: berth restart %s %s", name, name, strings.Join(changedFlags(cmd), " "))
			}
			fmt.Fprintln(out, capitalize(err.Error()))
			if activate {
				activateContext(cmd, name)
			}
			return nil
		}
		return err
	}
	if changed {
		if err := store.WriteFileAtomic(inst.Path(store.ConfigFile), text, 0o600); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "Starting %q: %d CPUs, %s GiB memory, %d GiB disk, %s\n", name, cfg.CPUs, fmtGiB(cfg.Memory), cfg.Disk, cfg.Arch)
	t0 := time.Now()
	p := &startProgress{out: out, t0: t0}
	stopTicker := p.tick(stillEvery)
	err = starter.Start(cmd.Context(), p.event)
	stopTicker()
	starter.Release()
	if err != nil {
		return err
	}
	st, _ := instance.Status(cmd.Context(), inst)
	fmt.Fprintf(out, "  [%5.1fs] %s", time.Since(t0).Seconds(), st.State)
	if st.Guest != nil && st.Guest.EngineVersion != "" {
		fmt.Fprintf(out, " (Docker Engine %s, accelerator %s)", st.Guest.EngineVersion, st.Accel)
	}
	fmt.Fprintln(out)
	if activate && activateContext(cmd, name) {
		return nil
	}
	fmt.Fprintf(out, "\nUse it with:\n  docker --context %s ps\n  docker context use %s     # make it the default\n  export DOCKER_HOST=unix://%s\n",
		st.DockerContext, st.DockerContext, st.DockerSocket)
	return nil
}

// changedFlags repeats the settings flags the user gave, for a message.
func changedFlags(cmd *cobra.Command) []string {
	var a []string
	for _, n := range []string{"cpus", "memory", "disk", "arch", "accel", "mount", "dns", "env"} {
		fl := cmd.Flags().Lookup(n)
		if fl == nil || !fl.Changed {
			continue
		}
		switch n {
		case "mount", "env":
			vals, _ := cmd.Flags().GetStringArray(n)
			for _, v := range vals {
				a = append(a, "--"+n+" "+v)
			}
		default:
			a = append(a, "--"+n+" "+strings.Trim(fl.Value.String(), "[]"))
		}
	}
	return a
}

// activateContext makes the instance's docker context the current one, as
// `docker context use` would, and says so. A failure is a warning: the instance runs.
func activateContext(cmd *cobra.Command, name string) bool {
	ctx := dockerctx.Name(name)
	out := cmd.OutOrStdout()
	prev, _ := dockerctx.Current()
	if err := dockerctx.Use(ctx); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: could not make the docker context %q current: %v\n", ctx, err)
		return false
	}
	if prev != ctx {
		fmt.Fprintf(out, "Docker context %q is now current (it was %q): `docker ps` talks to this instance. Keep the old one with --activate=false.\n", ctx, orDefault(prev))
	} else {
		fmt.Fprintf(out, "Docker context %q is current: `docker ps` talks to this instance.\n", ctx)
	}
	for _, v := range []string{"DOCKER_HOST", "DOCKER_CONTEXT"} {
		if val := os.Getenv(v); val != "" {
			fmt.Fprintf(out, "Note: %s=%s is set in this environment and overrides the current context; unset it to use %q.\n", v, val, ctx)
		}
	}
	return true
}

func orDefault(ctx string) string {
	if ctx == "" {
		return "default"
	}
	return ctx
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// fmtGiB prints GiB without trailing zeros: 2, 2.5.
func fmtGiB(g float64) string { return fmt.Sprintf("%g", g) }

// startProgress prints a start's phases as they finish and, during a long phase, a
// "still booting" line at least every stillEvery, so a slow boot never looks hung.
type startProgress struct {
	out   io.Writer
	t0    time.Time
	mu    sync.Mutex
	phase string    // the phase in progress
	since time.Time // when it began
	last  time.Time // last line printed; zero until the daemon's first event
}

func (p *startProgress) event(ev api.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.last.IsZero() {
		p.last = now
	}
	if ev.Phase == "" || ev.State != api.StateStarting {
		return
	}
	if !ev.Done {
		p.phase, p.since = ev.Phase, now
		return
	}
	fmt.Fprintf(p.out, "  [%5.1fs] %-8s %s\n", now.Sub(p.t0).Seconds(), ev.Phase, ev.Message)
	p.last = now
	if ev.Phase == p.phase {
		p.phase = ""
	}
}

// tick starts the "still booting" printer; the returned func stops it and waits for it.
func (p *startProgress) tick(every time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every / 10)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			p.mu.Lock()
			now := time.Now()
			if !p.last.IsZero() && now.Sub(p.last) >= every {
				what := "still booting"
				if p.phase != "" {
					what = fmt.Sprintf("still booting: %s (for %.0fs)", p.phase, now.Sub(p.since).Seconds())
				}
				fmt.Fprintf(p.out, "  [%5.1fs] %s\n", now.Sub(p.t0).Seconds(), what)
				p.last = now
			}
			p.mu.Unlock()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
