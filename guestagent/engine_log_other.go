//go:build !linux

package guestagent

import "errors"

// watchWrites has no inotify here: capLoop checks every interval.
func watchWrites(string) (<-chan struct{}, func(), error) {
	return nil, nil, errors.New("no inotify")
}
