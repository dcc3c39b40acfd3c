package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The layout of an instance directory is versioned, so that a berth can tell a directory
// it cannot read (written by a newer berth: a downgrade) from a broken one, and refuse
// that instance alone while every other keeps working (docs/state-dir.md).

// FormatFile records which layout an instance directory has.
const FormatFile = "format.json"

// Format is the layout this berth reads and writes. Raise it when a change would make a
// directory unreadable, or wrong, to an older berth (a file renamed or moved, a config key
// whose meaning changed), and add the step that brings a directory of the previous format
// up to it to migrations. A directory without FormatFile predates it and is format 1.
const Format = 1

// migrations[n] brings a directory of format n to format n+1.
var migrations = map[int]func(*Instance) error{}

// WrittenBy names the berth that writes FormatFile ("berth v1.2.3"); main sets it.
var WrittenBy = "berth"

// FormatRecord is FormatFile's content.
type FormatRecord struct {
	Format    int    `json:"format"`
	WrittenBy string `json:"writtenBy"`
}

// ErrIncompatible is returned for an instance directory written by a newer berth, and
// ErrFormatDamaged for one whose FormatFile does not read.
var (
	ErrIncompatible  = errors.New("written by a newer berth")
	ErrFormatDamaged = errors.New("is damaged")
)

// ReadFormat returns the instance directory's format record (format 1 when it has none).
func (i *Instance) ReadFormat() (FormatRecord, error) {
	b, err := os.ReadFile(i.Path(FormatFile))
	if errors.Is(err, fs.ErrNotExist) {
		return FormatRecord{Format: 1}, nil
	}
	if err != nil {
		return FormatRecord{}, err
	}
	var r FormatRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Format < 1 {
		return r, fmt.Errorf("%s %w (%q): it says which berth can read instance %q; if this berth created the instance, remove the file", i.Path(FormatFile), ErrFormatDamaged, b, i.Name)
	}
	return r, nil
}

// CheckFormat returns an error wrapping ErrIncompatible when the directory was written by
// a berth newer than this one; an older directory is fine (UpgradeFormat brings it up).
func (i *Instance) CheckFormat() error {
	r, err := i.ReadFormat()
	if err != nil {
		return err
	}
	if r.Format > Format {
		return fmt.Errorf("instance %q was %w (%s, state format %d; this berth reads format %d and older): upgrade berth to use it; other instances are not affected", i.Name, ErrIncompatible, r.WrittenBy, r.Format, Format)
	}
	return nil
}

// UpgradeFormat brings the directory to Format, running each migration step in turn, and
// records it. A directory already at Format is left as it is.
func (i *Instance) UpgradeFormat() error {
	r, err := i.ReadFormat()
	if err != nil {
		return err
	}
	if r.Format > Format {
		return i.CheckFormat()
	}
	if r.Format == Format {
		if _, err := os.Stat(i.Path(FormatFile)); err == nil {
			return nil
		}
	}
	for n := r.Format; n < Format; n++ {
		step, ok := migrations[n]
		if !ok {
			return fmt.Errorf("instance %q: no upgrade from state format %d to %d", i.Name, n, n+1)
		}
		if err := step(i); err != nil {
			return fmt.Errorf("instance %q: upgrading its state from format %d: %w", i.Name, n, err)
		}
	}
	b, _ := json.Marshal(FormatRecord{Format: Format, WrittenBy: WrittenBy})
	return WriteFileAtomic(i.Path(FormatFile), append(b, '\n'), privFileMode)
}
