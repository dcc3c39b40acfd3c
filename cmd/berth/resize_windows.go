package main

// watchResize: Windows consoles have no SIGWINCH; the size is sent once at start.
func watchResize(fd int, fn func(rows, cols uint16)) {}
