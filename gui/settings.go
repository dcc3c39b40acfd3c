package gui

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/host/store"
)

// Settings are the tray's own choices (the VM's live in the instance's berth.yaml). They
// are a file rather than fyne preferences because two processes use them: the
// Preferences window writes them and the tray process reads them when Quit is clicked.
type Settings struct {
	// StopOnQuit: Quit stops the VM first (otherwise it leaves it running).
	StopOnQuit bool `json:"stopOnQuit"`
}

// SettingsFile is where the settings live: tray.json in berth's root (~/.berth).
func SettingsFile() (string, error) {
	root, err := store.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "tray.json"), nil
}

// LoadSettings reads the settings; a missing or unreadable file gives the defaults.
func LoadSettings() Settings {
	var s Settings
	if path, err := SettingsFile(); err == nil {
		if b, err := os.ReadFile(path); err == nil {
			json.Unmarshal(b, &s)
		}
	}
	return s
}

// SaveSettings writes the settings atomically (berth's root is created 0700 if missing).
func SaveSettings(s Settings) error {
	path, err := SettingsFile()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(path, append(b, '\n'), 0o600)
}
