package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// OpenPrivate opens a file of berth's state (a lock, a log) without following a symbolic
// link at path: a link planted there (or restored from a backup) would otherwise have
// berth truncate or write into whatever it points at. Such a link is an error that says
// what to do. On Windows, where links need privileges to create, it is os.OpenFile.
func OpenPrivate(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|noFollow, perm)
	if err != nil && noFollow != 0 && errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link; berth does not follow links among its own files: remove it and try again", path)
	}
	return f, err
}
