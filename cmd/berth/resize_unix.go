//go:build !windows

package main

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// watchResize reports terminal size changes (SIGWINCH) for the life of the process.
func watchResize(fd int, fn func(rows, cols uint16)) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	go func() {
		for range ch {
			if cols, rows, err := term.GetSize(fd); err == nil {
				fn(uint16(rows), uint16(cols))
			}
		}
	}()
}
