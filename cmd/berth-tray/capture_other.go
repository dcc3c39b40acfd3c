//go:build cgo && !(linux && !wayland)

package main

import "github.com/berth-dev/berth/gui"

// windowCapture: Canvas.Capture is the only screenshot source here.
var windowCapture gui.Capturer
