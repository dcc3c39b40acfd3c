//go:build cgo

package main

import "os"

// takeStdout returns stdout for the window channel and sends Go's own stdout writes to
// stderr (a GUI program on Windows has no console for C libraries to print to).
func takeStdout() (*os.File, error) {
	ch := os.Stdout
	os.Stdout = os.Stderr
	return ch, nil
}
