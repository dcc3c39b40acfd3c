//go:build !cgo

// Command berth-tray needs cgo: fyne draws with OpenGL through GLFW. This stub keeps
// `CGO_ENABLED=0 go build ./...` and cross-platform vet working; see docs/tray.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "berth-tray was built without cgo; rebuild with CGO_ENABLED=1 (see docs/tray.md)")
	os.Exit(1)
}
