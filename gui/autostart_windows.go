//go:build windows

package gui

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows/registry"
)

func setRunValue(key, name, command string) error {
	k, _, err := registry.CreateKey(registry.CURRENT_USER, key, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("failed to open HKCU\\%s: %w", key, err)
	}
	defer k.Close()
	if err := k.SetStringValue(name, command); err != nil {
		return fmt.Errorf("failed to set HKCU\\%s\\%s: %w", key, name, err)
	}
	return nil
}

func deleteRunValue(key, name string) error {
	k, err := registry.OpenKey(registry.CURRENT_USER, key, registry.SET_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open HKCU\\%s: %w", key, err)
	}
	defer k.Close()
	if err := k.DeleteValue(name); err != nil && !errors.Is(err, registry.ErrNotExist) {
		return fmt.Errorf("failed to delete HKCU\\%s\\%s: %w", key, name, err)
	}
	return nil
}

func getRunValue(key, name string) (string, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, key, registry.QUERY_VALUE)
	if err != nil {
		return "", err
	}
	defer k.Close()
	v, _, err := k.GetStringValue(name)
	return v, err
}
