// Command mkicns writes berth.icns for Berth.app: from a square PNG (-png), or berth's
// built-in icon drawing.
//
//	go run ./installer/macos/mkicns -o Berth.app/Contents/Resources/berth.icns [-png icon.png]
package main

import (
	"flag"
	"fmt"
	"image"
	"image/png"
	"os"

	"github.com/berth-dev/berth/installer/macos/icns"
)

func main() {
	out := flag.String("o", "berth.icns", "output file")
	in := flag.String("png", "", "square PNG to use (at least 512x512); default: the built-in icon")
	flag.Parse()
	if err := run(*out, *in); err != nil {
		fmt.Fprintln(os.Stderr, "mkicns:", err)
		os.Exit(1)
	}
}

func run(out, in string) error {
	var src image.Image
	if in == "" {
		src = icns.Default(1024)
	} else {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		if src, err = png.Decode(f); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		if b := src.Bounds(); b.Dx() != b.Dy() || b.Dx() < 512 {
			return fmt.Errorf("%s is %dx%d: want a square of at least 512 pixels", in, b.Dx(), b.Dy())
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := icns.Encode(f, src); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
