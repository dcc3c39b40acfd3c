// Package icns writes (and, for tests, reads) Apple icon files: an "icns" header and one
// PNG-encoded image per size, the form macOS has read since 10.7. Berth.app's
// Resources/berth.icns is generated with it (installer/macos/mkicns), from a PNG or from the
// built-in drawing below, so no binary icon lives in the repository.
package icns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
)

// Types are the PNG icon types written, with their pixel sizes (@2x types included: a
// Retina display picks the 2x entry of a point size).
var Types = []struct {
	Type string
	Size int
}{
	{"icp4", 16}, {"icp5", 32}, {"ic11", 32}, {"icp6", 64}, {"ic12", 64},
	{"ic07", 128}, {"ic08", 256}, {"ic13", 256}, {"ic09", 512}, {"ic14", 512}, {"ic10", 1024},
}

// Encode writes an icns file with every entry of Types, each src scaled to its size.
func Encode(w io.Writer, src image.Image) error {
	pngs := map[int][]byte{}
	var body bytes.Buffer
	for _, t := range Types {
		p, ok := pngs[t.Size]
		if !ok {
			var b bytes.Buffer
			if err := png.Encode(&b, Scale(src, t.Size)); err != nil {
				return err
			}
			p = b.Bytes()
			pngs[t.Size] = p
		}
		body.WriteString(t.Type)
		binary.Write(&body, binary.BigEndian, uint32(8+len(p)))
		body.Write(p)
	}
	var hdr [8]byte
	copy(hdr[:], "icns")
	binary.BigEndian.PutUint32(hdr[4:], uint32(8+body.Len()))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body.Bytes())
	return err
}

// Entry is one icon in a parsed icns file.
type Entry struct {
	Type string
	Data []byte
}

// Parse splits an icns file into its entries, checking every length.
func Parse(b []byte) ([]Entry, error) {
	if len(b) < 8 || string(b[:4]) != "icns" {
		return nil, errors.New("not an icns file (no icns magic)")
	}
	if n := binary.BigEndian.Uint32(b[4:8]); int(n) != len(b) {
		return nil, fmt.Errorf("header says %d bytes, file has %d", n, len(b))
	}
	var out []Entry
	for off := 8; off < len(b); {
		if len(b)-off < 8 {
			return nil, fmt.Errorf("truncated entry header at %d", off)
		}
		n := int(binary.BigEndian.Uint32(b[off+4 : off+8]))
		if n < 8 || off+n > len(b) {
			return nil, fmt.Errorf("entry %q at %d has bad length %d", b[off:off+4], off, n)
		}
		out = append(out, Entry{Type: string(b[off : off+4]), Data: b[off+8 : off+n]})
		off += n
	}
	return out, nil
}

// Scale resizes src to size×size with a box filter (area average), which is all an icon
// needs when shrinking.
func Scale(src image.Image, size int) image.Image {
	b := src.Bounds()
	dst := image.NewNRGBA(image.Rect(0, 0, size, size))
	sw, sh := b.Dx(), b.Dy()
	for y := 0; y < size; y++ {
		y0, y1 := b.Min.Y+y*sh/size, b.Min.Y+max((y+1)*sh/size, y*sh/size+1)
		for x := 0; x < size; x++ {
			x0, x1 := b.Min.X+x*sw/size, b.Min.X+max((x+1)*sw/size, x*sw/size+1)
			var r, g, bl, a, n uint64
			for sy := y0; sy < y1; sy++ {
				for sx := x0; sx < x1; sx++ {
					c := color.NRGBAModel.Convert(src.At(sx, sy)).(color.NRGBA)
					// Premultiply so transparent pixels do not darken edges.
					r += uint64(c.R) * uint64(c.A)
					g += uint64(c.G) * uint64(c.A)
					bl += uint64(c.B) * uint64(c.A)
					a += uint64(c.A)
					n++
				}
			}
			if a == 0 {
				continue
			}
			dst.SetNRGBA(x, y, color.NRGBA{uint8(r / a), uint8(g / a), uint8(bl / a), uint8(a / n)})
		}
	}
	return dst
}

// Default draws berth's icon at size×size: a container ship at its berth (a hull carrying
// three containers over a wave) on a rounded square, supersampled 4x for smooth edges.
func Default(size int) image.Image {
	const ss = 2 // 2x2 samples per pixel
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	draw.Draw(img, img.Bounds(), image.Transparent, image.Point{}, draw.Src)
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var r, g, b, a float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					u := (float64(x) + (float64(sx)+0.5)/ss) / float64(size)
					v := (float64(y) + (float64(sy)+0.5)/ss) / float64(size)
					c, ok := shade(u, v)
					if !ok {
						continue
					}
					r += float64(c.R)
					g += float64(c.G)
					b += float64(c.B)
					a++
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(x, y, color.NRGBA{uint8(r / a), uint8(g / a), uint8(b / a), uint8(255 * a / ss / ss)})
		}
	}
	return img
}

// shade is the icon's colour at (u, v) in [0,1]², and false outside the rounded square
// (Apple's grid: an 824/1024 square with 185/1024 corner radius).
func shade(u, v float64) (color.NRGBA, bool) {
	const m, rad = 100.0 / 1024, 185.0 / 1024
	if !inRoundRect(u, v, m, m, 1-m, 1-m, rad) {
		return color.NRGBA{}, false
	}
	// Waves: a sine band under the hull.
	wave := 0.74 + 0.015*math.Sin(u*2*math.Pi*4)
	switch {
	case v > 0.43 && v < 0.56 && u > 0.27 && u < 0.395:
		return color.NRGBA{0xf2, 0x8c, 0x28, 0xff}, true // orange container
	case v > 0.43 && v < 0.56 && u > 0.435 && u < 0.565:
		return color.NRGBA{0xf5, 0xc5, 0x18, 0xff}, true // yellow container
	case v > 0.43 && v < 0.56 && u > 0.605 && u < 0.73:
		return color.NRGBA{0xe5, 0x48, 0x4d, 0xff}, true // red container
	case v >= 0.57 && v <= 0.71:
		// Hull: a trapezoid, wider at the deck.
		t := (v - 0.57) / 0.14
		l, r := 0.20+0.08*t, 0.80-0.08*t
		if u >= l && u <= r {
			return color.NRGBA{0xff, 0xff, 0xff, 0xff}, true
		}
	}
	if v > wave && v < wave+0.035 {
		return color.NRGBA{0x9f, 0xe0, 0xf0, 0xff}, true
	}
	// Background: a vertical gradient from deep blue to teal.
	t := (v - m) / (1 - 2*m)
	return color.NRGBA{uint8(0x12 + t*(0x0b-0x12)), uint8(0x3a + t*(0x8a-0x3a)), uint8(0x8c + t*(0xa8-0x8c)), 0xff}, true
}

func inRoundRect(u, v, x0, y0, x1, y1, r float64) bool {
	if u < x0 || u > x1 || v < y0 || v > y1 {
		return false
	}
	cx := math.Max(x0+r, math.Min(u, x1-r))
	cy := math.Max(y0+r, math.Min(v, y1-r))
	return (u-cx)*(u-cx)+(v-cy)*(v-cy) <= r*r
}
