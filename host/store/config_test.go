package store

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		check   func(Config) bool
		wantErr string
	}{
		{name: "empty gives defaults", in: "", check: func(c Config) bool { return reflect.DeepEqual(c, DefaultConfig()) }},
		{name: "shares", in: "shares:\n  - path: /src\n    readOnly: true\n", check: func(c Config) bool {
			return len(c.Shares) == 1 && c.Shares[0].Path == "/src" && c.Shares[0].ReadOnly
		}},
		{name: "no shares", in: "shares: []\n", check: func(c Config) bool { return len(c.Shares) == 0 }},
		{name: "values", in: "cpus: 4\nmemory: 8\ndisk: 100\naccel: tcg\n", check: func(c Config) bool {
			return c.CPUs == 4 && c.Memory == 8 && c.Disk == 100 && c.Accel == "tcg"
		}},
		{name: "unknown key names its line", in: "cpus: 2\nmemroy: 4\n", wantErr: "line 2: field memroy not found"},
		{name: "wrong type names its line", in: "cpus: two\n", wantErr: "line 1"},
		{name: "broken yaml", in: "cpus: [\n", wantErr: "line"},
		{name: "out of range", in: "cpus: 0\n", wantErr: "cpus: 0 is out of range"},
		{name: "bad arch", in: "arch: sparc\n", wantErr: "arch"},
		{name: "bad accel", in: "accel: xen\n", wantErr: "accel"},
		{name: "small disk", in: "disk: 1\n", wantErr: "disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestConfigRoundTrip(t *testing.T) {
	c := DefaultConfig()
	c.CPUs, c.Memory, c.Disk, c.Accel, c.Images = 3, 5, 77, "tcg", "/x/images"
	got, err := ParseConfig(c.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip: got %+v, want %+v", got, c)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("cpus: 2\nmemory: 4\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && c.Validate() != nil {
			t.Errorf("accepted an invalid config: %+v", c)
		}
	})
}

func TestInstanceLifecycle(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	if _, err := Open("default"); err == nil {
		t.Fatal("opened a missing instance")
	}
	inst, err := Create("default", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(inst.Dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("instance dir mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	if st, _ := os.Stat(inst.Path(ConfigFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := Open("default"); err != nil {
		t.Fatal(err)
	}
	if inst.DaemonPID() != 0 {
		t.Error("no daemon yet, but DaemonPID != 0")
	}
	lock, err := inst.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	if inst.DaemonPID() != os.Getpid() {
		t.Errorf("DaemonPID = %d, want %d", inst.DaemonPID(), os.Getpid())
	}
	if _, err := inst.TryLock(); err != ErrLocked {
		t.Errorf("second lock: %v, want ErrLocked", err)
	}
	lock.Release()
	if inst.DaemonPID() != 0 {
		t.Error("lock released, but DaemonPID != 0")
	}
	if err := inst.WriteState(State{State: "Running", PID: 42}); err != nil {
		t.Fatal(err)
	}
	if s := inst.ReadState(); s.State != "Running" || s.PID != 42 {
		t.Errorf("state %+v", s)
	}
	os.WriteFile(inst.Path(StateFile), []byte("{torn"), 0o600)
	if s := inst.ReadState(); s.State != "Stopped" {
		t.Errorf("a torn state file reads as %+v", s)
	}
	// A half-created instance (no config) is listed but does not open.
	os.MkdirAll(filepath.Join(filepath.Dir(inst.Dir), "half"), 0o700)
	names, _ := List()
	if !reflect.DeepEqual(names, []string{"default", "half"}) {
		t.Errorf("List = %v", names)
	}
}
