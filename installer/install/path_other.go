//go:build !windows

package install

import "errors"

// addUserPath edits the Windows user environment; elsewhere the PATH belongs to the
// user's shell profile, which berth does not edit (it says what to add instead).
func addUserPath(dir string) (bool, error) {
	return false, errors.New("the user PATH in the registry exists only on Windows")
}

// removeUserPath: nothing to undo off Windows.
func removeUserPath(dir string) (bool, error) { return false, nil }
