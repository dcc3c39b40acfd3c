//go:build !windows

package gui

import "errors"

// The Run registry value exists only on Windows; an Autostart for windows computed
// elsewhere (in tests) can be rendered but not installed.
var errNoRegistry = errors.New("autostart: the Windows registry is only reachable on Windows")

func setRunValue(key, name, command string) error  { return errNoRegistry }
func deleteRunValue(key, name string) error        { return errNoRegistry }
func getRunValue(key, name string) (string, error) { return "", errNoRegistry }
