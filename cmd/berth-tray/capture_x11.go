//go:build linux && cgo && !wayland

package main

/*
#cgo LDFLAGS: -lX11
#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <stdlib.h>

static int berth_x_error;

static int berth_on_x_error(Display *d, XErrorEvent *e) {
	berth_x_error = e->error_code;
	return 0;
}

static int shift_of(unsigned long mask) {
	int s = 0;
	while (mask && !(mask & 1)) { mask >>= 1; s++; }
	return s;
}

// berth_capture copies what the X server shows of window win as RGBA into a malloc'd
// buffer. It uses its own connection and its own error handler, so a failed request
// becomes an error code instead of Xlib's default exit().
static int berth_capture(unsigned long win, int *w, int *h, unsigned char **out) {
	Display *dpy = XOpenDisplay(NULL);
	if (!dpy) return -1;
	int (*prev)(Display *, XErrorEvent *) = XSetErrorHandler(berth_on_x_error);
	berth_x_error = 0;
	int rc = 0;
	XWindowAttributes attr;
	XImage *img = NULL;
	if (!XGetWindowAttributes(dpy, (Window)win, &attr)) { rc = -2; goto done; }
	if (attr.map_state != IsViewable) { rc = -3; goto done; }
	img = XGetImage(dpy, (Window)win, 0, 0, attr.width, attr.height, AllPlanes, ZPixmap);
	XSync(dpy, False);
	if (!img) { rc = berth_x_error ? berth_x_error : -4; goto done; }
	unsigned char *buf = malloc((size_t)attr.width * attr.height * 4);
	if (!buf) { rc = -5; goto done; }
	int rs = shift_of(img->red_mask), gs = shift_of(img->green_mask), bs = shift_of(img->blue_mask);
	unsigned long rm = img->red_mask >> rs, gm = img->green_mask >> gs, bm = img->blue_mask >> bs;
	for (int y = 0; y < attr.height; y++) {
		for (int x = 0; x < attr.width; x++) {
			unsigned long p = XGetPixel(img, x, y);
			unsigned char *o = buf + ((size_t)y * attr.width + x) * 4;
			o[0] = rm ? ((p >> rs) & rm) * 255 / rm : 0;
			o[1] = gm ? ((p >> gs) & gm) * 255 / gm : 0;
			o[2] = bm ? ((p >> bs) & bm) * 255 / bm : 0;
			o[3] = 255;
		}
	}
	*w = attr.width;
	*h = attr.height;
	*out = buf;
done:
	if (img) XDestroyImage(img);
	XSetErrorHandler(prev);
	XCloseDisplay(dpy);
	return rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"image"
	"unsafe"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver"
	"github.com/berth-dev/berth/gui"
)

// windowCapture is the automation hook's fallback screenshot on X11: the window's pixels
// as the X server has them (XGetImage), for GL stacks whose front buffer reads back
// empty (Mesa's software GL under Xvfb).
var windowCapture gui.Capturer = func(w fyne.Window) (image.Image, error) {
	nw, ok := w.(driver.NativeWindow)
	if !ok {
		return nil, errors.New("not a native window")
	}
	var handle uintptr
	nw.RunNative(func(ctx any) {
		if x, ok := ctx.(driver.X11WindowContext); ok {
			handle = x.WindowHandle
		}
	})
	if handle == 0 {
		return nil, errors.New("not an X11 window")
	}
	var cw, ch C.int
	var buf *C.uchar
	if rc := C.berth_capture(C.ulong(handle), &cw, &ch, &buf); rc != 0 {
		return nil, fmt.Errorf("XGetImage of window %#x failed (%d)", handle, int(rc))
	}
	defer C.free(unsafe.Pointer(buf))
	img := image.NewNRGBA(image.Rect(0, 0, int(cw), int(ch)))
	copy(img.Pix, unsafe.Slice((*byte)(unsafe.Pointer(buf)), len(img.Pix)))
	return img, nil
}
