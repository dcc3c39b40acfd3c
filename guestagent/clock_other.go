//go:build !linux

package guestagent

import "time"

// systemClock is only the VM's clock on Linux.
type systemClock struct{}

func (systemClock) Now() time.Time                       { return time.Now() }
func (systemClock) Adjust(time.Duration) (string, error) { return "", errNotLinux }
