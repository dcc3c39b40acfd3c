package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Files in an instance directory.
const (
	ConfigFile   = "berth.yaml"
	StateFile    = "state.json"
	PIDFile      = "hostd.pid"
	ControlSock  = "hostd.sock"
	DockerSock   = "docker.sock"
	HostdLog     = "hostd.log"
	ConsoleLog   = "console.log"
	DataDisk     = "data.img"
	RuntimeDir   = "run" // driver sockets (QMP, agent port)
	ImagesDir    = "_images"
	DefaultName  = "default"
	envHome      = "BERTH_HOME"
	dirMode      = 0o700
	privFileMode = 0o600
)

// HomeMarker is the file berth writes into the root when it creates it, so that
// `berth uninstall --data` can tell a root of berth's own from a directory it was merely
// pointed at (BERTH_HOME=$HOME).
const HomeMarker = ".berth-home"

// RootMarker is HomeMarker's content.
type RootMarker struct {
	CreatedBy string    `json:"createdBy"`
	Created   time.Time `json:"created"`
}

// EnsureRoot creates the root (0700, with missing parents) if it does not exist, and then
// writes HomeMarker into it saying createdBy. A root that exists is left as it is: a
// marker is only ever written into a directory berth itself created.
func EnsureRoot(createdBy string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(root); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(filepath.Dir(root), dirMode); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", filepath.Dir(root), err)
	}
	if err := os.Mkdir(root, dirMode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return root, nil // someone else made it meanwhile
		}
		return "", fmt.Errorf("failed to create %s: %w", root, err)
	}
	b, _ := json.Marshal(RootMarker{CreatedBy: createdBy, Created: time.Now().UTC().Truncate(time.Second)})
	if err := WriteFileAtomic(filepath.Join(root, HomeMarker), append(b, '\n'), privFileMode); err != nil {
		return "", fmt.Errorf("failed to mark %s as berth's: %w", root, err)
	}
	return root, nil
}

// HasMarker reports whether root carries HomeMarker, i.e. berth created it.
func HasMarker(root string) bool {
	st, err := os.Lstat(filepath.Join(root, HomeMarker))
	return err == nil && st.Mode().IsRegular()
}

// Root is the directory holding every instance: $BERTH_HOME, else ~/.berth.
func Root() (string, error) {
	if d := os.Getenv(envHome); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("failed to find the home directory: %w", err)
	}
	return filepath.Join(home, ".berth"), nil
}

// Instance is one VM's directory.
type Instance struct {
	Name string
	Dir  string
}

// ErrNotFound is returned for an instance that does not exist.
var ErrNotFound = errors.New("instance not found")

// Open returns an existing instance.
func Open(name string) (*Instance, error) {
	inst, err := instance(name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(inst.Path(ConfigFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("instance %q: %w (create it with `berth start %s`)", name, ErrNotFound, name)
		}
		return nil, err
	}
	return inst, nil
}

// Create makes the instance directory and writes its config if it has none.
// It returns nil for an instance that already exists.
func Create(name string, cfg Config) (*Instance, error) {
	inst, err := instance(name)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := EnsureRoot("berth (instance " + name + ")"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(inst.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("failed to create %s: %w", inst.Dir, err)
	}
	// MkdirAll keeps the mode of a directory that exists; the state dir must stay private.
	if err := os.Chmod(inst.Dir, dirMode); err != nil {
		return nil, err
	}
	if _, err := os.Stat(inst.Path(ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		if err := inst.UpgradeFormat(); err != nil {
			return nil, err
		}
		if err := WriteFileAtomic(inst.Path(ConfigFile), cfg.Marshal(), privFileMode); err != nil {
			return nil, err
		}
	}
	return inst, nil
}

func instance(name string) (*Instance, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	root, err := Root()
	if err != nil {
		return nil, err
	}
	return &Instance{Name: name, Dir: filepath.Join(root, name)}, nil
}

// Path returns a file of the instance.
func (i *Instance) Path(name string) string { return filepath.Join(i.Dir, name) }

// Config reads and validates berth.yaml; errors name the file and line. A directory
// written by a newer berth is refused (ErrIncompatible) before its config is read.
func (i *Instance) Config() (Config, error) {
	if err := i.CheckFormat(); err != nil {
		return Config{}, err
	}
	p := i.Path(ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("invalid config %s: %w", p, err)
	}
	return c, nil
}

// SaveConfig validates and writes berth.yaml atomically. Only the values that change are
// rewritten: comments and the layout of the rest stay (see Merge).
func (i *Instance) SaveConfig(c Config) error {
	if err := i.CheckFormat(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	old, err := os.ReadFile(i.Path(ConfigFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return WriteFileAtomic(i.Path(ConfigFile), Merge(old, c), privFileMode)
}

// SetConfig applies `berth config set` assignments to berth.yaml (see Set) and writes it
// atomically when they are valid; otherwise the file is left as it was. It returns the
// config before and after.
func (i *Instance) SetConfig(assignments []string) (before, after Config, err error) {
	if err := i.CheckFormat(); err != nil {
		return before, after, err
	}
	p := i.Path(ConfigFile)
	doc, err := os.ReadFile(p)
	if err != nil {
		return before, after, err
	}
	before, _ = ParseConfig(doc)
	after, text, err := Set(doc, assignments)
	if err != nil {
		return before, after, err
	}
	if bytes.Equal(text, doc) {
		return before, after, nil
	}
	return before, after, WriteFileAtomic(p, text, privFileMode)
}

// Existing returns an instance whose directory exists, with or without a config: one
// left half-deleted, or whose data disk was kept by `berth delete`. Open is for
// instances that can start.
func Existing(name string) (*Instance, error) {
	inst, err := instance(name)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(inst.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("instance %q: %w", name, ErrNotFound)
		}
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("instance %q: %s is not a directory", name, inst.Dir)
	}
	return inst, nil
}

// DataOnly reports whether only the data disk of the instance is left (what `berth
// delete` without --data keeps).
func (i *Instance) DataOnly() bool {
	entries, err := os.ReadDir(i.Dir)
	if err != nil || len(entries) == 0 {
		return false
	}
	for _, e := range entries {
		if e.Name() != DataDisk {
			return false
		}
	}
	return true
}

// State is state.json: what the last daemon recorded.
type State struct {
	State     string    `json:"state"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// ReadState returns the recorded state; a missing or broken file reads as stopped.
func (i *Instance) ReadState() State {
	var s State
	b, err := os.ReadFile(i.Path(StateFile))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return State{State: "Stopped"}
	}
	return s
}

// WriteState records the state atomically.
func (i *Instance) WriteState(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(i.Path(StateFile), append(b, '\n'), privFileMode)
}

// List returns every instance name, sorted. Directories without a config (half-created)
// are listed too so they can be deleted; `_`-prefixed directories are berth's own.
func List() ([]string, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// WriteFileAtomic writes through a temporary file and a rename, so a crash leaves the old
// or the new content, never a torn file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
