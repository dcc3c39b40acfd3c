//go:build !windows

package install

import "errors"

// setRunValue exists on Windows only (the HKCU Run key).
func setRunValue(name, data string) (bool, error) {
	return false, errors.New("the Run registry key exists only on Windows")
}

// deleteRunValue: nothing to delete off Windows.
func deleteRunValue(name string) (bool, error) { return false, nil }
