package install

import (
	"errors"
	"io/fs"

	"golang.org/x/sys/windows/registry"
)

// setRunValue sets HKCU\Software\Microsoft\Windows\CurrentVersion\Run\<name> = data and
// reports whether it changed.
func setRunValue(name, data string) (bool, error) {
	k, _, err := registry.CreateKey(registry.CURRENT_USER, RunKey, registry.QUERY_VALUE|registry.SET_VALUE)
	if err != nil {
		return false, err
	}
	defer k.Close()
	if old, _, err := k.GetStringValue(name); err == nil && old == data {
		return false, nil
	}
	return true, k.SetStringValue(name, data)
}

// deleteRunValue removes the Run value; a missing one is not an error.
func deleteRunValue(name string) (bool, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, RunKey, registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer k.Close()
	err = k.DeleteValue(name)
	if errors.Is(err, registry.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
