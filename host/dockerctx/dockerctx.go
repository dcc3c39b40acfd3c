// Package dockerctx writes the docker CLI's context for an instance straight into the
// CLI's context store, so no docker binary is needed to set it up and other contexts and
// settings are never touched.
package dockerctx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/host/store"
)

// Name is the context name for an instance: "berth" for the default one.
func Name(instance string) string {
	if instance == "default" {
		return "berth"
	}
	return "berth-" + instance
}

// ConfigDir is $DOCKER_CONFIG, else ~/.docker.
func ConfigDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".docker"), nil
}

type meta struct {
	Name      string              `json:"Name"`
	Metadata  map[string]string   `json:"Metadata"`
	Endpoints map[string]endpoint `json:"Endpoints"`
}

type endpoint struct {
	Host          string `json:"Host"`
	SkipTLSVerify bool   `json:"SkipTLSVerify"`
}

// metaDir is where the CLI keeps a context: contexts/meta/<sha256 of the name>.
func metaDir(cfgDir, name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(cfgDir, "contexts", "meta", hex.EncodeToString(sum[:]))
}

// Ensure creates or updates the context to point at host (unix:///… or npipe:////./pipe/…).
func Ensure(name, host, description string) error {
	dir, err := ConfigDir()
	if err != nil {
		return err
	}
	m := meta{
		Name:      name,
		Metadata:  map[string]string{"Description": description},
		Endpoints: map[string]endpoint{"docker": {Host: host}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	md := metaDir(dir, name)
	if old, err := os.ReadFile(filepath.Join(md, "meta.json")); err == nil && string(old) == string(b) {
		return nil
	}
	if err := os.MkdirAll(md, 0o755); err != nil {
		return fmt.Errorf("failed to create docker context %q: %w", name, err)
	}
	// A temp file of its own: several processes may write one context at once (a cluster's
	// context: `berth cluster create` and the nodes' hostds); the last rename wins whole.
	if err := store.WriteFileAtomic(filepath.Join(md, "meta.json"), b, 0o644); err != nil {
		return fmt.Errorf("failed to write docker context %q: %w", name, err)
	}
	return nil
}

// Host returns the docker endpoint a context points at, or "" if it does not exist.
func Host(name string) (string, error) {
	dir, err := ConfigDir()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(metaDir(dir, name), "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("docker context %q is corrupt: %w", name, err)
	}
	return m.Endpoints["docker"].Host, nil
}

// Remove deletes the context. If it was the current context, the CLI is switched back to
// its default so the next docker command does not fail on a missing context.
func Remove(name string) error {
	dir, err := ConfigDir()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(metaDir(dir, name)); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(name))
	os.RemoveAll(filepath.Join(dir, "contexts", "tls", hex.EncodeToString(sum[:])))
	return unsetCurrent(filepath.Join(dir, "config.json"), name)
}

// unsetCurrent drops currentContext from config.json when it names ctx, keeping every
// other key as it was.
func unsetCurrent(path, ctx string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil // not ours to repair
	}
	var cur string
	if json.Unmarshal(cfg["currentContext"], &cur) != nil || cur != ctx {
		return nil
	}
	delete(cfg, "currentContext")
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, st.Mode().Perm())
}

// Current returns the docker CLI's current context from config.json ("" when unset, which
// the CLI reads as "default").
func Current() (string, error) {
	dir, err := ConfigDir()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var cfg struct {
		CurrentContext string `json:"currentContext"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("%s is not valid JSON: %w", filepath.Join(dir, "config.json"), err)
	}
	return cfg.CurrentContext, nil
}

// Use makes name the docker CLI's current context, as `docker context use` does: it sets
// currentContext in config.json, keeping every other key, and creates the file (0600, in a
// 0700 directory) when there is none. The context must exist. A config.json that is not
// valid JSON is left alone and reported.
func Use(name string) error {
	dir, err := ConfigDir()
	if err != nil {
		return err
	}
	if h, err := Host(name); err != nil {
		return err
	} else if h == "" {
		return fmt.Errorf("docker context %q does not exist", name)
	}
	path := filepath.Join(dir, "config.json")
	cfg := map[string]json.RawMessage{}
	mode := os.FileMode(0o600)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s is not valid JSON (%v): fix it, then run `docker context use %s`", path, err, name)
		}
		if cfg == nil {
			cfg = map[string]json.RawMessage{}
		}
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	default:
		return err
	}
	var cur string
	if json.Unmarshal(cfg["currentContext"], &cur) == nil && cur == name {
		return nil
	}
	cfg["currentContext"], _ = json.Marshal(name)
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	tmp := path + ".berth.tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
