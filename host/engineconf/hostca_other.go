//go:build !linux && !darwin && !windows

package engineconf

import "errors"

// HostCAs is not implemented here.
func HostCAs() ([]byte, error) {
	return nil, errors.New("reading the host's CA store is not supported on this system")
}
