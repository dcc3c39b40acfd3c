package gui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"fyne.io/fyne/v2"
)

// The automation hook lets end-to-end tests drive the real tray binary
// (`berth-tray --automation SOCKET`): HTTP on a 0600 unix socket, three requests.
//
//	GET  /state                                     what the tray shows (AutomationState)
//	POST /click?item=NAME                           runs a menu item, by ID or label, as a click
//	POST /screenshot?window=containers&path=FILE    shows the window, writes its canvas as PNG
//	                                                ({"path", "source": "capture" or "windowsystem"})
//
// Windows for /screenshot: containers, preferences, logs. It is off unless the flag is
// given, and reachable only by the user (socket mode 0600, like hostd.sock).

// AutomationState is the answer of GET /state.
type AutomationState struct {
	Look       string      `json:"look"`
	Headline   string      `json:"headline"`
	State      string      `json:"state"`
	Busy       string      `json:"busy,omitempty"`
	Error      string      `json:"error,omitempty"`
	Menu       []MenuItem  `json:"menu"`
	Containers []Container `json:"containers"`
}

// ScreenshotFunc shows a window (Window*) and writes it to path as PNG, returning where
// the pixels came from (Source*): WindowProcs.Screenshot in the tray process, Screenshot
// where the windows are in-process.
type ScreenshotFunc func(window, path string) (string, error)

// ServeAutomation serves the hook on sock until ctx ends. doWait runs a function on the
// tray's Do goroutine and waits for it.
func ServeAutomation(ctx context.Context, sock string, t *Tray, doWait func(func()), shoot ScreenshotFunc) error {
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("automation: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		var st AutomationState
		doWait(func() {
			s := t.ctrl.Snapshot()
			st = AutomationState{Look: s.Look().String(), Headline: s.Headline(), State: s.State, Busy: s.Busy,
				Error: s.Error, Menu: t.MenuState(), Containers: s.Containers}
		})
		writeAutomationJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /click", func(w http.ResponseWriter, r *http.Request) {
		var err error
		doWait(func() { err = t.Click(r.URL.Query().Get("item")) })
		if err != nil {
			writeAutomationJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeAutomationJSON(w, http.StatusOK, map[string]string{})
	})
	mux.HandleFunc("POST /screenshot", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		path := q.Get("path")
		if !filepath.IsAbs(path) {
			writeAutomationJSON(w, http.StatusBadRequest, map[string]string{"error": "path must be absolute"})
			return
		}
		window := q.Get("window")
		if window == "" {
			window = WindowContainers
		}
		source, err := shoot(window, path)
		if err != nil {
			writeAutomationJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeAutomationJSON(w, http.StatusOK, map[string]string{"path": path, "source": source})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return nil
}

func writeAutomationJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Screenshot shows one of u's windows and writes its canvas (fyne's Canvas.Capture) to
// path as PNG. doWait runs a function on the UI goroutine and waits for it
// (fyne.DoAndWait); fallback (may be nil) captures a window whose Canvas.Capture comes
// back blank. It returns where the pixels came from (Source*).
func Screenshot(u *UI, window, path string, doWait func(func()), fallback Capturer) (string, error) {
	var win fyne.Window
	var err error
	doWait(func() {
		if err = u.Show(window); err == nil {
			win = u.Window(window)
		}
	})
	if err != nil {
		return "", err
	}
	// A window just mapped needs a few frames before its framebuffer holds the content.
	var img image.Image
	source := SourceCapture
	for i := 0; i < 10; i++ {
		time.Sleep(150 * time.Millisecond)
		doWait(func() { img = win.Canvas().Capture() })
		if img != nil && !uniform(img) {
			break
		}
	}
	if (img == nil || uniform(img)) && fallback != nil {
		// Capture reads OpenGL's front buffer, which some software GL stacks (Mesa's
		// swrast under Xvfb) return empty although the window shows on the screen: then
		// the platform's own window capture is used.
		var err error
		doWait(func() { img, err = fallback(win) })
		if err != nil {
			return "", fmt.Errorf("the window could not be captured: %w", err)
		}
		source = SourceWindowSystem
	}
	if img == nil {
		return "", errors.New("the window could not be captured")
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return "", err
	}
	return source, f.Close()
}

// Where a screenshot's pixels came from.
const (
	SourceCapture      = "capture"      // the window's OpenGL framebuffer (Canvas.Capture)
	SourceWindowSystem = "windowsystem" // the window system's copy of the window (X11 GetImage)
)

// Capturer captures a window through the window system; run on the UI goroutine.
type Capturer func(fyne.Window) (image.Image, error)

// uniform reports whether an image is one colour (a window not drawn yet).
func uniform(img image.Image) bool {
	b := img.Bounds()
	if b.Empty() {
		return true
	}
	r0, g0, b0, a0 := img.At(b.Min.X, b.Min.Y).RGBA()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bb, a := img.At(x, y).RGBA()
			if r != r0 || g != g0 || bb != b0 || a != a0 {
				return false
			}
		}
	}
	return true
}
