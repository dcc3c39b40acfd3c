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
)

// FetchOptions say which bundle to download and where to put it.
type FetchOptions struct {
	// URL of the bundle (tar.gz); its checksum is URL + ".sha256" (sha256sum format).
	// `{arch}` is replaced by Arch.
	URL string
	// Dir is the images root (~/.berth/_images): the image lands in Dir/<Arch>, and the
	// download is kept as Dir/<bundle name>.part until it is verified.
	Dir  string
	Arch string
	// Progress receives "bytes / total (percent)" lines; nil shows nothing.
	Progress io.Writer
	// Client defaults to an http.Client without an overall timeout (a bundle is hundreds
	// of MiB) but with a bounded wait for response headers.
	Client *http.Client
	// Attempts bounds the downloads tried, each resuming where the last one stopped;
	// 0 means 4.
	Attempts int
}

// ErrCorrupt is returned for a bundle whose sha256 does not match its .sha256 file.
var ErrCorrupt = errors.New("corrupt bundle")

// ExpandURL replaces `{arch}` in a bundle URL.
func ExpandURL(u, arch string) string { return strings.ReplaceAll(u, "{arch}", arch) }

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 60 * time.Second,
	TLSHandshakeTimeout:   30 * time.Second,
}}

// Fetch downloads the bundle, resuming a partial download left by an earlier attempt
// (HTTP Range on the .part file), verifies its sha256 against URL.sha256, and extracts it
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
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("invalid image bundle URL %q: want http(s)://…/berth-image-<version>-<arch>.tar.gz", raw)
	}
	name := path.Base(u.Path)
	if name == "" || name == "/" || name == "." {
		return fmt.Errorf("invalid image bundle URL %q: it names no file", raw)
	}
	want, err := fetchChecksum(ctx, o.Client, raw+".sha256")
	if err != nil {
		return err
	}
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
			return fmt.Errorf("%w: %s has sha256 %s but %s.sha256 says %s; the download was deleted", ErrCorrupt, raw, got, raw, want)
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

// RemoteSHA256 returns the sha256 a bundle's URL.sha256 names ({arch} already expanded).
func RemoteSHA256(ctx context.Context, url string) (string, error) {
	return fetchChecksum(ctx, defaultClient, url+".sha256")
}

// fetchChecksum reads a sha256sum-style file: "<64 hex digits>[  name]".
func fetchChecksum(ctx context.Context, c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("failed to fetch the bundle checksum: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("failed to fetch the bundle checksum %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("failed to fetch the bundle checksum: %w", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return "", fmt.Errorf("the bundle checksum %s is empty", u)
	}
	sum := strings.ToLower(fields[0])
	if dec, err := hex.DecodeString(sum); err != nil || len(dec) != sha256.Size {
		return "", fmt.Errorf("the bundle checksum %s is not a sha256 (%q)", u, fields[0])
	}
	return sum, nil
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
	p := &progress{w: w, name: name, done: offset, total: total}
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
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}

// progress prints "name: 12.0 MiB / 300.0 MiB (4%)" at most every 200 ms, on one
// carriage-returned line, and a final line with a newline.
type progress struct {
	w           io.Writer
	name        string
	done, total int64
	last        time.Time
	printed     bool
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if time.Since(p.last) >= 200*time.Millisecond {
		p.print("\r")
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
	p.print("\r")
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
