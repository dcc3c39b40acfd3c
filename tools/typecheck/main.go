// Command typecheck type-checks the project as macOS code (GOOS=darwin, cgo on) on a machine
// that cannot compile it: Linux has no macOS SDK, so the darwin+cgo files (vm/vz, which uses
// github.com/Code-Hex/vz/v3) are never compiled in CI. This is the next best thing: the real
// source of every dependency, vz included, checked with go/types.
//
// Usage (from anywhere in the module):
//
//	go run ./tools/typecheck                  # ./... for darwin/arm64 and darwin/amd64
//	go run ./tools/typecheck ./vm/... ./host/...
//	go run ./tools/typecheck -arch arm64 -tags foo ./vm/vz
//	go run ./tools/typecheck -deps ./vm/vz   # also show errors inside dependencies
//
// How: for each GOARCH, `go list -e -deps -test -json` with GOOS=darwin CGO_ENABLED=1 gives
// every package in dependency order with its directory, its files as go/build selects them
// for that build context (cgo files included, because cgo is on) and its import map
// (vendored std packages, test variants). Each package is parsed and checked by go/types
// with FakeImportC (import "C" becomes an empty fake package, so cgo files type-check
// without running cgo), gc sizes for the GOARCH, and an importer that resolves each import
// through that package's import map to another package checked the same way, recursively
// and once (cached). The stock "source" importer cannot do this: it runs cgo, which needs
// the macOS SDK. As a guard, the file lists of the project's own packages are compared with
// a go/build.Context{GOOS: darwin, CgoEnabled: true}.
//
// Dependencies are checked without function bodies (declarations are all an importer
// needs, and it is several times faster); the project's own packages are checked in full,
// test files included. Only errors in the project's own packages (module Main) are reported
// and make the exit status 1; -deps also prints dependency errors, for information.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("typecheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	arch := fs.String("arch", "arm64,amd64", "comma-separated GOARCH values to check (GOOS is darwin)")
	tags := fs.String("tags", "", "comma-separated extra build tags")
	tests := fs.Bool("test", true, "also check the project's _test.go files")
	deps := fs.Bool("deps", false, "also print errors found in dependencies (never fatal) and check their function bodies")
	verbose := fs.Bool("v", false, "print what is checked and how long it takes")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: typecheck [flags] [packages]  (default ./...)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opts := Options{
		Patterns: fs.Args(),
		Tags:     *tags,
		Tests:    *tests,
		Deps:     *deps,
	}
	for _, a := range strings.Split(*arch, ",") {
		if a = strings.TrimSpace(a); a != "" {
			opts.Arches = append(opts.Arches, a)
		}
	}
	if *verbose {
		opts.Log = stderr
	}
	start := time.Now()
	res, err := Check(opts)
	if err != nil {
		fmt.Fprintln(stderr, "typecheck:", err)
		return 2
	}
	wd, _ := os.Getwd()
	for _, d := range res.Deps {
		fmt.Fprintf(stderr, "dependency (ignored): %s\n", d.Format(wd))
	}
	for _, d := range res.Own {
		fmt.Fprintln(stdout, d.Format(wd))
	}
	if opts.Log != nil {
		fmt.Fprintf(stderr, "typecheck: %d packages (%d own) for darwin/%s in %s\n",
			res.Packages, res.OwnPackages, strings.Join(opts.Arches, ","), time.Since(start).Round(time.Millisecond))
	}
	if len(res.Own) > 0 {
		fmt.Fprintf(stderr, "typecheck: %d error(s) for darwin\n", len(res.Own))
		return 1
	}
	return 0
}

// Options for Check.
type Options struct {
	Patterns []string  // package patterns; empty means ./...
	Arches   []string  // GOARCH values; empty means arm64 and amd64
	Tags     string    // extra build tags, comma-separated
	Tests    bool      // include the own packages' test files
	Deps     bool      // collect dependency errors too (and check dependency bodies)
	Dir      string    // directory go list runs in; empty: the current one
	Log      io.Writer // progress, or nil
}

// Diag is one type error.
type Diag struct {
	Pos    token.Position
	Msg    string
	Arches []string // the GOARCHes it occurred for; nil when it occurred for all
	Pkg    string
	own    bool
}

// Format renders file:line:col: message, with the file relative to wd when inside it and
// the architectures named when the error is not common to all checked ones.
func (d Diag) Format(wd string) string {
	pos := d.Pos
	if wd != "" {
		if rel, err := filepath.Rel(wd, pos.Filename); err == nil && !strings.HasPrefix(rel, "..") {
			pos.Filename = rel
		}
	}
	s := pos.String() + ": " + d.Msg
	if d.Arches != nil {
		s += " (darwin/" + strings.Join(d.Arches, ", darwin/") + " only)"
	}
	return s
}

// Result of Check.
type Result struct {
	Own         []Diag // errors in the project's own packages
	Deps        []Diag // errors in dependencies (only with Options.Deps)
	Packages    int    // packages checked, summed over architectures
	OwnPackages int
}

// Check type-checks the packages for darwin on every requested architecture.
func Check(opts Options) (*Result, error) {
	if len(opts.Patterns) == 0 {
		opts.Patterns = []string{"./..."}
	}
	if len(opts.Arches) == 0 {
		opts.Arches = []string{"arm64", "amd64"}
	}
	res := &Result{}
	type key struct {
		pos token.Position
		msg string
	}
	seen := map[key]*Diag{}
	var order []key
	for _, arch := range opts.Arches {
		t0 := time.Now()
		c, err := newChecker(opts, arch)
		if err != nil {
			return nil, err
		}
		c.checkAll()
		res.Packages += c.checked
		res.OwnPackages += c.ownChecked
		for _, d := range c.diags {
			k := key{d.Pos, d.Msg}
			if prev, ok := seen[k]; ok {
				if !slices.Contains(prev.Arches, arch) {
					prev.Arches = append(prev.Arches, arch)
				}
				continue
			}
			seen[k] = &Diag{Pos: d.Pos, Msg: d.Msg, Pkg: d.Pkg, Arches: []string{arch}, own: d.own}
			order = append(order, k)
		}
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "typecheck: darwin/%s: %d packages (%d own) in %s\n", arch, c.checked, c.ownChecked, time.Since(t0).Round(time.Millisecond))
		}
	}
	for _, k := range order {
		d := *seen[k]
		if len(d.Arches) == len(opts.Arches) {
			d.Arches = nil
		}
		if d.own {
			res.Own = append(res.Own, d)
		} else {
			res.Deps = append(res.Deps, d)
		}
	}
	sort.SliceStable(res.Own, func(i, j int) bool { return posLess(res.Own[i].Pos, res.Own[j].Pos) })
	sort.SliceStable(res.Deps, func(i, j int) bool { return posLess(res.Deps[i].Pos, res.Deps[j].Pos) })
	return res, nil
}

func posLess(a, b token.Position) bool {
	if a.Filename != b.Filename {
		return a.Filename < b.Filename
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Column < b.Column
}

// listPkg is the part of `go list -json` output we use.
type listPkg struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	ImportMap  map[string]string
	ForTest    string
	DepOnly    bool
	Standard   bool
	Module     *struct {
		Path      string
		Main      bool
		GoVersion string
	}
	Error *struct{ Err string }
}

func (p *listPkg) own() bool { return p.Module != nil && p.Module.Main }

// path is the import path without the " [p.test]" variant suffix.
func (p *listPkg) path() string {
	path, _, _ := strings.Cut(p.ImportPath, " ")
	return path
}

type diag struct {
	Pos token.Position
	Msg string
	Pkg string
	own bool
}

type checker struct {
	opts    Options
	arch    string
	fset    *token.FileSet
	sizes   types.Sizes
	pkgs    map[string]*listPkg       // by ImportPath (test variants keep their suffix)
	order   []*listPkg                // go list order (dependencies first)
	done    map[string]*types.Package // checked packages
	busy    map[string]bool           // cycle guard
	diags   []diag
	checked int

	ownChecked int
}

func newChecker(opts Options, arch string) (*checker, error) {
	c := &checker{
		opts:  opts,
		arch:  arch,
		fset:  token.NewFileSet(),
		sizes: types.SizesFor("gc", arch),
		pkgs:  map[string]*listPkg{},
		done:  map[string]*types.Package{},
		busy:  map[string]bool{},
	}
	if c.sizes == nil {
		return nil, fmt.Errorf("unknown GOARCH %q", arch)
	}
	args := []string{"list", "-e", "-deps", "-json=ImportPath,Name,Dir,GoFiles,CgoFiles,ImportMap,ForTest,DepOnly,Standard,Module,Error"}
	if opts.Tests {
		args = append(args, "-test")
	}
	if opts.Tags != "" {
		args = append(args, "-tags", opts.Tags)
	}
	args = append(args, "--")
	args = append(args, opts.Patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), "GOOS=darwin", "GOARCH="+arch, "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s (darwin/%s): %v\n%s", strings.Join(args, " "), arch, err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listPkg)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("parsing go list output: %w", err)
		}
		c.pkgs[p.ImportPath] = p
		c.order = append(c.order, p)
	}
	return c, nil
}

// checkAll checks every listed package that matters: all of the project's own and, through
// the importer, whatever they import.
func (c *checker) checkAll() {
	for _, p := range c.order {
		if !p.own() || p.DepOnly && !c.opts.Deps {
			continue
		}
		if p.ForTest == "" && p.Name == "main" && strings.HasSuffix(p.ImportPath, ".test") {
			continue // generated test main: its source lives in the build cache
		}
		if p.Error != nil && len(p.GoFiles)+len(p.CgoFiles) == 0 {
			if strings.Contains(p.Error.Err, "build constraints exclude all Go files") {
				continue // not darwin code
			}
			c.diags = append(c.diags, diag{Pos: token.Position{Filename: p.Dir}, Msg: p.Error.Err, Pkg: p.ImportPath, own: true})
			continue
		}
		c.crossCheck(p)
		c.check(p)
	}
}

// crossCheck compares go list's file selection for an own package with go/build's for the
// same context, so a difference in how the two select files cannot go unnoticed.
func (c *checker) crossCheck(p *listPkg) {
	if p.ForTest != "" || p.Dir == "" {
		return
	}
	ctxt := build.Default
	ctxt.GOOS, ctxt.GOARCH, ctxt.CgoEnabled = "darwin", c.arch, true
	if c.opts.Tags != "" {
		ctxt.BuildTags = strings.Split(c.opts.Tags, ",")
	}
	bp, err := ctxt.ImportDir(p.Dir, 0)
	if err != nil {
		var noGo *build.NoGoError
		if !errors.As(err, &noGo) {
			return // go list reported it already
		}
	}
	var got, want []string
	if bp != nil {
		got = append(append(got, bp.GoFiles...), bp.CgoFiles...)
	}
	want = append(append(want, p.GoFiles...), p.CgoFiles...)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		c.diags = append(c.diags, diag{
			Pos: token.Position{Filename: p.Dir},
			Msg: fmt.Sprintf("file selection differs: go list %v, go/build %v", want, got),
			Pkg: p.ImportPath, own: true,
		})
	}
}

// check parses and type-checks p (once), first checking what it imports.
func (c *checker) check(p *listPkg) (*types.Package, error) {
	if tp, ok := c.done[p.ImportPath]; ok {
		return tp, nil
	}
	if c.busy[p.ImportPath] {
		return nil, fmt.Errorf("import cycle through %s", p.ImportPath)
	}
	c.busy[p.ImportPath] = true
	defer delete(c.busy, p.ImportPath)

	own := p.own()
	report := own || c.opts.Deps
	add := func(pos token.Position, msg string) {
		if report {
			c.diags = append(c.diags, diag{Pos: pos, Msg: msg, Pkg: p.ImportPath, own: own})
		}
	}

	mode := parser.SkipObjectResolution
	if own {
		mode |= parser.AllErrors | parser.ParseComments
	}
	var files []*ast.File
	for _, name := range append(append([]string(nil), p.GoFiles...), p.CgoFiles...) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(p.Dir, name)
		}
		f, err := parser.ParseFile(c.fset, name, nil, mode)
		if err != nil {
			var list scanner.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					add(e.Pos, e.Msg)
				}
			} else {
				add(token.Position{Filename: name}, err.Error())
			}
		}
		if f != nil {
			files = append(files, f)
		}
	}

	conf := types.Config{
		Importer:         importerFunc(func(path string) (*types.Package, error) { return c.importFrom(p, path) }),
		FakeImportC:      true,
		Sizes:            c.sizes,
		IgnoreFuncBodies: !own && !c.opts.Deps,
		Error: func(err error) {
			if te, ok := err.(types.Error); ok {
				add(c.fset.Position(te.Pos), te.Msg)
				return
			}
			add(token.Position{}, err.Error())
		},
	}
	if p.Module != nil && p.Module.GoVersion != "" {
		conf.GoVersion = "go" + p.Module.GoVersion
	}
	tp, _ := conf.Check(p.path(), c.fset, files, nil)
	c.done[p.ImportPath] = tp
	c.checked++
	if own {
		c.ownChecked++
	}
	return tp, nil
}

func (c *checker) importFrom(from *listPkg, path string) (*types.Package, error) {
	if path == "unsafe" {
		return types.Unsafe, nil
	}
	if mapped, ok := from.ImportMap[path]; ok {
		path = mapped
	}
	p, ok := c.pkgs[path]
	if !ok {
		return nil, fmt.Errorf("package %s is not in go list's dependency graph for darwin/%s", path, c.arch)
	}
	if p.Error != nil && len(p.GoFiles)+len(p.CgoFiles) == 0 {
		return nil, fmt.Errorf("%s: %s", path, p.Error.Err)
	}
	return c.check(p)
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }
