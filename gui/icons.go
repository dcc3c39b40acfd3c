package gui

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"sync"
)

// Tray icons are drawn here rather than shipped as files: a shipping container, whose
// colour and mark tell the state at a glance — grey outline (stopped), amber with an
// ellipsis (starting or stopping), green with ribs (running), orange with "!" (degraded),
// red with "×" (error).

// IconSize is the side of the rendered icons in pixels; trays scale them down.
const IconSize = 64

var (
	colGrey   = color.NRGBA{0x8a, 0x8f, 0x98, 0xff}
	colAmber  = color.NRGBA{0xe0, 0xa1, 0x00, 0xff}
	colGreen  = color.NRGBA{0x1f, 0xa8, 0x5a, 0xff}
	colOrange = color.NRGBA{0xf0, 0x71, 0x18, 0xff}
	colRed    = color.NRGBA{0xd9, 0x2d, 0x20, 0xff}
	colWhite  = color.NRGBA{0xff, 0xff, 0xff, 0xff}
)

var (
	iconOnce sync.Once
	iconPNG  [5][]byte
)

// IconPNG returns the PNG for a look.
func IconPNG(l Look) []byte {
	iconOnce.Do(func() {
		for i := range iconPNG {
			var b bytes.Buffer
			png.Encode(&b, DrawIcon(Look(i), IconSize))
			iconPNG[i] = b.Bytes()
		}
	})
	return iconPNG[l]
}

// DrawIcon renders the icon for a look at size×size pixels, antialiased by 4×4
// supersampling.
func DrawIcon(l Look, size int) *image.NRGBA {
	const ss = 4
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	scale := 64.0 / float64(size) // the shapes are designed on a 64-unit grid
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var r, g, b, a float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					px := (float64(x) + (float64(sx)+0.5)/ss) * scale
					py := (float64(y) + (float64(sy)+0.5)/ss) * scale
					c := iconSample(l, px, py)
					fa := float64(c.A) / 255
					r += float64(c.R) * fa
					g += float64(c.G) * fa
					b += float64(c.B) * fa
					a += fa
				}
			}
			if a == 0 {
				continue
			}
			n := float64(ss * ss)
			img.SetNRGBA(x, y, color.NRGBA{
				R: uint8(math.Round(r / a)), G: uint8(math.Round(g / a)), B: uint8(math.Round(b / a)),
				A: uint8(math.Round(a / n * 255)),
			})
		}
	}
	return img
}

// The container: a rounded box from (4,14) to (60,50).
const (
	boxX0, boxY0, boxX1, boxY1, boxR = 4.0, 14.0, 60.0, 50.0, 6.0
)

func iconSample(l Look, x, y float64) color.NRGBA {
	inBox := roundRect(x, y, boxX0, boxY0, boxX1, boxY1, boxR)
	if !inBox {
		return color.NRGBA{}
	}
	var fill color.NRGBA
	switch l {
	case LookStopped:
		// An outline only: the box is there, nothing runs in it.
		if roundRect(x, y, boxX0+5, boxY0+5, boxX1-5, boxY1-5, boxR-3) {
			if ribs(x, y) {
				return colGrey
			}
			return color.NRGBA{}
		}
		return colGrey
	case LookStarting:
		fill = colAmber
		if circle(x, y, 20, 32, 4.5) || circle(x, y, 32, 32, 4.5) || circle(x, y, 44, 32, 4.5) {
			return colWhite
		}
	case LookRunning:
		fill = colGreen
		if ribs(x, y) {
			return colWhite
		}
	case LookDegraded:
		fill = colOrange
		if roundRect(x, y, 28.5, 19, 35.5, 37, 3) || circle(x, y, 32, 43, 3.8) {
			return colWhite
		}
	case LookError:
		fill = colRed
		if segment(x, y, 22, 22, 42, 42, 3.8) || segment(x, y, 42, 22, 22, 42, 3.8) {
			return colWhite
		}
	}
	return fill
}

// ribs are the corrugation of the container's side.
func ribs(x, y float64) bool {
	if y < boxY0+9 || y > boxY1-9 {
		return false
	}
	for _, cx := range []float64{16, 26, 38, 48} {
		if math.Abs(x-cx) <= 2.2 {
			return true
		}
	}
	return false
}

func roundRect(x, y, x0, y0, x1, y1, r float64) bool {
	if x < x0 || x > x1 || y < y0 || y > y1 {
		return false
	}
	cx := math.Max(x0+r, math.Min(x, x1-r))
	cy := math.Max(y0+r, math.Min(y, y1-r))
	return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
}

func circle(x, y, cx, cy, r float64) bool {
	return (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r
}

// segment reports whether (x, y) is within w of the segment (x0,y0)-(x1,y1).
func segment(x, y, x0, y0, x1, y1, w float64) bool {
	dx, dy := x1-x0, y1-y0
	t := ((x-x0)*dx + (y-y0)*dy) / (dx*dx + dy*dy)
	t = math.Max(0, math.Min(1, t))
	px, py := x0+t*dx-x, y0+t*dy-y
	return px*px+py*py <= w*w
}
