package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"
)

// FetchOptions say which bundle to download and where to put it.
type FetchOptions struct {
	// URL of the bundle (tar.gz), https:// only. `{arch}` is replaced by Arch.
	URL string
	// SHA256 is the bundle's expected sha256 (hex). Empty means the checksum built into
	// this berth for Arch (BuiltinSHA256); without either Fetch refuses: a checksum served
	// beside the bundle proves nothing about it.
	SHA256 string
	// Dir is the images root (~/.berth/_images): the image lands in Dir/<Arch>, and the
	// download is kept as Dir/<bundle name>.part until it is verified.
	Dir  string
	Arch string
	// Progress receives "bytes / total (percent)" lines; nil shows nothing.
	Progress io.Writer
	// Client defaults to an http.Client without an overall timeout (a bundle is hundreds
	// of MiB) but with a bounded wait for response headers. Redirects to anything but
	// https:// are refused whatever the client.
	Client *http.Client
	// Attempts bounds the downloads tried, each resuming where the last one stopped;
	// 0 means 4.
	Attempts int
}

// BundleSHA256 is set at build time (-ldflags "-X
// github.com/berth-dev/berth/host/image.BundleSHA256=amd64=HEX,arm64=HEX", see the
// Makefile) to the sha256 of the guest image bundles built with this berth, one per
// architecture. Empty in a build without bundles.
var BundleSHA256 string

// EnvSHA256 gives the sha256 of the bundle BERTH_IMAGE_URL names, for a berth built
// without one (the user's explicit choice, like `berth install --image-sha256`).
const EnvSHA256 = "BERTH_IMAGE_SHA256"

// BuiltinSHA256 returns the bundle checksum built into this berth for arch, or "".
func BuiltinSHA256(arch string) string {
	for _, kv := range strings.Split(BundleSHA256, ",") {
		if a, sum, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && a == arch {
			return strings.ToLower(strings.TrimSpace(sum))
		}
	}
	return ""
}

// ExpectedSHA256 is the checksum a download of arch's bundle is checked against: given
// (explicitly, by the user) or else built in. It fails, saying how to pass one, when there
// is neither or the given one is not a sha256.
func ExpectedSHA256(given, arch, url string) (string, error) {
	if given == "" {
		given = BuiltinSHA256(arch)
	}
	if given == "" {
		return "", fmt.Errorf("no sha256 to check the guest image bundle %s against: this berth was built without one for %s. "+
			"Pass the bundle's sha256 from a source you trust (the release notes, or the published %s.sha256 fetched over a channel you trust) "+
			"with `berth install --image-sha256 HEX`, or %s=HEX for `berth start`", url, arch, path.Base(url), EnvSHA256)
	}
	sum := strings.ToLower(strings.TrimSpace(given))
	if dec, err := hex.DecodeString(sum); err != nil || len(dec) != sha256.Size {
		return "", fmt.Errorf("%q is not a sha256 (64 hex digits)", given)
	}
	return sum, nil
}

// CheckURL accepts only https:// bundle URLs.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid image bundle URL %q: want https://…/berth-image-<version>-<arch>.tar.gz", raw)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("refusing the image bundle URL %q: only https:// downloads are allowed (a guest image fetched over %s could be replaced on the way); for a local copy use --image-dir", raw, u.Scheme)
	}
	name := path.Base(u.Path)
	if name == "" || name == "/" || name == "." {
		return nil, fmt.Errorf("invalid image bundle URL %q: it names no file", raw)
	}
	return u, nil
}

// httpsOnly refuses redirects away from https.
func httpsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("refusing a redirect to %s: only https:// downloads are allowed", req.URL.Redacted())
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// ErrCorrupt is returned for a bundle whose sha256 does not match the expected one.
var ErrCorrupt = errors.New("corrupt bundle")

// ExpandURL replaces `{arch}` in a bundle URL.
func ExpandURL(u, arch string) string { return strings.ReplaceAll(u, "{arch}", arch) }

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 60 * time.Second,
	TLSHandshakeTimeout:   30 * time.Second,
}}

// Fetch downloads the bundle over https, resuming a partial download left by an earlier
// attempt (HTTP Range on the .part file), verifies its sha256 against the expected one
// (given, or built into berth: never one from the same server), and extracts it
// atomically into Dir/<Arch>. A bundle that does not match its checksum is deleted and
// refused with ErrCorrupt; so is one whose content contradicts its own manifest.
func Fetch(ctx context.Context, o FetchOptions) error {
	if o.Client == nil {
		o.Client = defaultClient
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	raw := ExpandURL(o.URL, o.Arch)
	u, err := CheckURL(raw)
	if err != nil {
		return err
	}
	name := path.Base(u.Path)
	want, err := ExpectedSHA256(o.SHA256, o.Arch, raw)
	if err != nil {
		return err
	}
	client := *o.Client
	client.CheckRedirect = httpsOnly
	o.Client = &client
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %w", o.Dir, err)
	}
	part := filepath.Join(o.Dir, name+".part")

	restarted := false
	var lastErr error
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		if attempt > 1 {
			fmt.Fprintf(o.Progress, "download interrupted (%v); retrying (attempt %d of %d)\n", lastErr, attempt, o.Attempts)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt-1) * 500 * time.Millisecond):
			}
		}
		resumed, err := download(ctx, o.Client, raw, part, name, o.Progress)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return fmt.Errorf("download of %s stopped: %w (kept %s to resume)", raw, ctx.Err(), part)
			}
			continue
		}
		got, err := fileSHA256(part)
		if err != nil {
			return err
		}
		if got != want {
			os.Remove(part)
			// A resumed download may have joined two different files (the bundle was
			// replaced on the server between attempts): start over once from zero.
			if resumed && !restarted {
				restarted = true
				lastErr = fmt.Errorf("%w: sha256 %s after resuming, want %s", ErrCorrupt, got, want)
				continue
			}
			return fmt.Errorf("%w: %s has sha256 %s, expected %s; the download was deleted", ErrCorrupt, raw, got, want)
		}
		if err := extract(part, o.Dir, o.Arch); err != nil {
			os.Remove(part)
			return fmt.Errorf("%w: %s: %v; the download was deleted", ErrCorrupt, raw, err)
		}
		os.Remove(part)
		fmt.Fprintf(o.Progress, "installed the guest image for %s into %s\n", o.Arch, filepath.Join(o.Dir, o.Arch))
		return nil
	}
	return fmt.Errorf("failed to download %s after %d attempts: %w (kept %s to resume)", raw, o.Attempts, lastErr, part)
}

// download fetches u into part, resuming from part's current size with a Range request.
// It reports whether this attempt resumed (appended to earlier bytes).
func download(ctx context.Context, c *http.Client, u, part, name string, w io.Writer) (bool, error) {
	var offset int64
	if st, err := os.Stat(part); err == nil {
		offset = st.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()

	total := int64(-1)
	flags := os.O_CREATE | os.O_WRONLY
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return false, fmt.Errorf("the server answered the resume at %d with Content-Range %q", offset, resp.Header.Get("Content-Range"))
		}
		total = size
		flags |= os.O_APPEND
		fmt.Fprintf(w, "resuming %s at %s\n", name, humanBytes(offset))
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		// The .part is already whole (or longer than the file): the checksum decides.
		return true, nil
	case resp.StatusCode == http.StatusOK:
		// No range support, or a fresh download: start from zero.
		offset = 0
		flags |= os.O_TRUNC
		total = resp.ContentLength
	default:
		return false, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return false, err
	}
	p := &progress{w: w, name: name, done: offset, total: total, tty: isTerminal(w)}
	if !p.tty {
		p.last = time.Now() // the first line comes after 10 s, or at the end
	}
	_, cerr := io.Copy(io.MultiWriter(f, p), resp.Body)
	p.flush(cerr == nil)
	if err := f.Close(); cerr == nil {
		cerr = err
	}
	if cerr != nil {
		return offset > 0, cerr
	}
	if total >= 0 && p.done != total {
		return offset > 0, fmt.Errorf("got %d of %d bytes", p.done, total)
	}
	return offset > 0, nil
}

// parseContentRange reads "bytes START-END/SIZE"; SIZE may be "*" (unknown, -1).
func parseContentRange(s string) (start, size int64, ok bool) {
	s, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil || size < 0 {
			return 0, 0, false
		}
	}
	if start < 0 {
		return 0, 0, false
	}
	return start, size, true
}

// progress prints "name: 12.0 MiB / 300.0 MiB (4%)". On a terminal it redraws one
// carriage-returned line at most every 200 ms; into a pipe or a file it writes whole
// lines, one every 10 s at most, so logs get no carriage returns.
type progress struct {
	w           io.Writer
	name        string
	done, total int64
	last        time.Time
	printed     bool
	tty         bool
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	switch {
	case p.tty && time.Since(p.last) >= 200*time.Millisecond:
		p.print("\r")
	case !p.tty && time.Since(p.last) >= 10*time.Second:
		p.print("")
		fmt.Fprintln(p.w)
	}
	return len(b), nil
}

func (p *progress) print(prefix string) {
	p.last = time.Now()
	p.printed = true
	if p.total > 0 {
		fmt.Fprintf(p.w, "%sdownloading %s: %s / %s (%d%%)", prefix, p.name, humanBytes(p.done), humanBytes(p.total), p.done*100/p.total)
	} else {
		fmt.Fprintf(p.w, "%sdownloading %s: %s", prefix, p.name, humanBytes(p.done))
	}
}

func (p *progress) flush(ok bool) {
	if p.tty {
		p.print("\r")
	} else {
		p.print("")
	}
	fmt.Fprintln(p.w)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// extract unpacks a verified bundle into dir/<arch> through a staging directory. Only the
// known image files are accepted, as plain names (optionally "./name"); anything else (a
// path, a link, a device, an unknown file) makes the bundle invalid.
func extract(bundle, dir, arch string) error {
	f, err := os.Open(bundle)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a gzip file: %w", err)
	}
	tmp, err := newStaging(dir, arch)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("broken tar: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && (name == "" || name == ".") {
			continue
		}
		if h.Typeflag != tar.TypeReg || !known[name] || strings.ContainsAny(name, `/\`) {
			return fmt.Errorf("unexpected entry %q in the bundle", h.Name)
		}
		if seen[name] {
			return fmt.Errorf("%s appears twice in the bundle", name)
		}
		seen[name] = true
		if err := writeSparse(filepath.Join(tmp, name), tr); err != nil {
			return err
		}
	}
	if err := verifyDir(tmp, arch); err != nil {
		return err
	}
	return swapIn(tmp, filepath.Join(dir, arch))
}
