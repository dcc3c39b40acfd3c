package icns

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func TestEncodeParse(t *testing.T) {
	var b bytes.Buffer
	if err := Encode(&b, Default(256)); err != nil {
		t.Fatal(err)
	}
	entries, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(Types) {
		t.Fatalf("%d entries, want %d", len(entries), len(Types))
	}
	for i, e := range entries {
		if e.Type != Types[i].Type {
			t.Errorf("entry %d is %q, want %q", i, e.Type, Types[i].Type)
		}
		img, err := png.Decode(bytes.NewReader(e.Data))
		if err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		if s := Types[i].Size; img.Bounds() != image.Rect(0, 0, s, s) {
			t.Errorf("%s: %v, want %dx%d", e.Type, img.Bounds(), s, s)
		}
	}
	// Corners are transparent (outside the rounded square), the middle is opaque.
	img := Default(64)
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Error("corner not transparent")
	}
	if _, _, _, a := img.At(32, 20).RGBA(); a != 0xffff {
		t.Error("centre not opaque")
	}
}

func TestParseRejects(t *testing.T) {
	for _, b := range [][]byte{
		[]byte("nope"),
		[]byte("icns\x00\x00\x00\x09x"),
		[]byte("icns\x00\x00\x00\x10ic07\x00\x00\x00\x20"),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("%q parsed", b)
		}
	}
}

func TestScaleKeepsColour(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 10, 10))
	for i := range src.Pix {
		src.Pix[i] = 0
	}
	for y := 0; y < 10; y++ {
		for x := 0; x < 5; x++ {
			src.SetNRGBA(x, y, color.NRGBA{200, 100, 50, 255})
		}
	}
	got := Scale(src, 1).At(0, 0).(color.NRGBA)
	if got.R != 200 || got.G != 100 || got.B != 50 || got.A != 127 {
		t.Fatalf("scaled pixel %v: half transparent, colour kept", got)
	}
}
