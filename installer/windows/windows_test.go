// Package windows holds the Windows package recipe: files.txt, berth.wxs, build.sh and the
// Authenticode signing step sign.sh. These tests check the recipe against the Makefile's
// cross build, sign a cross-compiled berth.exe with a throwaway certificate, and (where
// wixl is installed) build and sign the .msi.
package windows

import (
	"bufio"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fileList reads files.txt: source (under _output/cross) → path in the install directory.
func fileList(t *testing.T) map[string]string {
	f, err := os.Open("files.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("files.txt: %q: want SOURCE NAME", line)
		}
		m[fields[0]] = fields[1]
	}
	return m
}

// crossWindowsOutputs derives, from the Makefile, the Windows files `make cross` writes
// (relative to $(OUT)/cross).
func crossWindowsOutputs(t *testing.T) []string {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	mk := string(b)
	var outs []string
	for _, v := range []struct{ variable, binary string }{{"CROSS_BERTH", "berth"}, {"CROSS_AGENT", "berth-agent"}} {
		m := regexp.MustCompile(`(?m)^` + v.variable + `\s*:?=\s*(.*)$`).FindStringSubmatch(mk)
		if m == nil {
			t.Fatalf("Makefile has no %s", v.variable)
		}
		// The recipe writes $(OUT)/cross/<os>-<arch>/<binary>$$ext, ext=.exe on windows.
		if v.binary == "berth" && !strings.Contains(mk, "-o $(OUT)/cross/$$os-$$arch/berth$$ext ./cmd/berth") {
			t.Fatal("the cross recipe no longer writes $(OUT)/cross/<os>-<arch>/berth$ext: update this test and files.txt")
		}
		// cross-toolchain runs tools/build.sh for each CROSS_BERTH platform into the same
		// directory: cli-plugins/docker-compose, cli-plugins/docker-buildx and docker.
		toolchain := v.binary == "berth" && strings.Contains(mk, "tools/build.sh --goos $$os --goarch $$arch --out $(OUT)/cross/$$os-$$arch")
		if v.binary == "berth" && !toolchain {
			t.Fatal("the cross-toolchain recipe no longer writes the docker toolchain to $(OUT)/cross/<os>-<arch>: update this test and files.txt")
		}
		for _, p := range strings.Fields(m[1]) {
			osName, arch, _ := strings.Cut(p, "/")
			if osName == "windows" {
				outs = append(outs, osName+"-"+arch+"/"+v.binary+".exe")
				if toolchain {
					for _, f := range []string{"cli-plugins/docker-compose", "cli-plugins/docker-buildx", "docker"} {
						outs = append(outs, osName+"-"+arch+"/"+f+".exe")
					}
				}
			}
		}
	}
	sort.Strings(outs)
	return outs
}

func TestFileListMatchesCross(t *testing.T) {
	files := fileList(t)
	var srcs []string
	for s := range files {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	if want := crossWindowsOutputs(t); !reflect.DeepEqual(srcs, want) {
		t.Fatalf("files.txt takes %v from _output/cross; make cross writes %v for Windows", srcs, want)
	}

	// berth.wxs installs exactly those paths under INSTALLDIR, from the staged sources.
	b, err := os.ReadFile("berth.wxs")
	if err != nil {
		t.Fatal(err)
	}
	var wxs struct {
		Dirs []wxsDir `xml:"Product>Directory"`
	}
	if err := xml.Unmarshal(b, &wxs); err != nil {
		t.Fatal(err)
	}
	var names, wantNames []string
	var walk func(d wxsDir, path string, in bool)
	walk = func(d wxsDir, path string, in bool) {
		if in {
			path += d.Name + "/"
		}
		if d.ID == "INSTALLDIR" {
			in, path = true, ""
		}
		for _, c := range d.Components {
			for _, f := range c.Files {
				if !in {
					t.Errorf("File %s is outside INSTALLDIR", f.Name)
					continue
				}
				names = append(names, path+f.Name)
				if f.Source != "$(var.SourceDir)/"+path+f.Name {
					t.Errorf("File %s has Source %q, want $(var.SourceDir)/%s", f.Name, f.Source, path+f.Name)
				}
			}
		}
		for _, sub := range d.Dirs {
			walk(sub, path, in)
		}
	}
	for _, d := range wxs.Dirs {
		walk(d, "", false)
	}
	for _, n := range files {
		wantNames = append(wantNames, n)
	}
	sort.Strings(names)
	sort.Strings(wantNames)
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("berth.wxs installs %v, files.txt lists %v", names, wantNames)
	}
}

type wxsDir struct {
	ID         string   `xml:"Id,attr"`
	Name       string   `xml:"Name,attr"`
	Dirs       []wxsDir `xml:"Directory"`
	Components []struct {
		Files []struct {
			Name   string `xml:"Name,attr"`
			Source string `xml:"Source,attr"`
		} `xml:"File"`
	} `xml:"Component"`
}

var (
	exeOnce sync.Once
	exePath string
	exeErr  error
)

// crossBerth cross-compiles berth.exe as `make cross` does (once per test run).
func crossBerth(t *testing.T) string {
	if testing.Short() {
		t.Skip("cross-compiles berth.exe; skipped with -short")
	}
	exeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-win-")
		if err != nil {
			exeErr = err
			return
		}
		exePath = filepath.Join(dir, "berth.exe")
		cmd := exec.Command("go", "build", "-trimpath", "-o", exePath, "./cmd/berth")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=windows", "GOARCH=amd64")
		if out, err := cmd.CombinedOutput(); err != nil {
			exeErr = err
			t.Logf("%s", out)
		}
	})
	if exeErr != nil {
		t.Fatalf("cross-compiling berth.exe: %v", exeErr)
	}
	return exePath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if exePath != "" {
		os.RemoveAll(filepath.Dir(exePath))
	}
	os.Exit(code)
}

// testCert makes a throwaway self-signed code-signing certificate; it returns the
// environment for sign.sh (key, certificate, and the certificate as the CA to verify with).
func testCert(t *testing.T) []string {
	for _, tool := range []string{"openssl", "osslsigncode"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
		"-subj", "/CN=berth test signing", "-keyout", key, "-out", cert,
		"-addext", "extendedKeyUsage=codeSigning", "-addext", "keyUsage=digitalSignature").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	return []string{"BERTH_WIN_CERT=" + cert, "BERTH_WIN_KEY=" + key, "BERTH_WIN_CAFILE=" + cert}
}

func script(t *testing.T, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command("./"+name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestSignCrossCompiledExe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	env := testCert(t)
	exe := filepath.Join(t.TempDir(), "berth.exe")
	b, err := os.ReadFile(crossBerth(t))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(exe, b, 0o755)
	caFile := strings.TrimPrefix(env[2], "BERTH_WIN_CAFILE=")

	// Unsigned: osslsigncode finds no signature.
	if out, err := exec.Command("osslsigncode", "verify", "-CAfile", caFile, "-in", exe).CombinedOutput(); err == nil {
		t.Fatalf("an unsigned berth.exe verifies:\n%s", out)
	}
	if out, err := script(t, env, "sign.sh", exe); err != nil || !strings.Contains(out, "signed and verified") {
		t.Fatalf("sign.sh: %v\n%s", err, out)
	}
	out, err := exec.Command("osslsigncode", "verify", "-CAfile", caFile, "-in", exe).CombinedOutput()
	if err != nil {
		t.Fatalf("osslsigncode verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Subject: /CN=berth test signing", "Message digest algorithm  : SHA256", "Text description: Berth", "Signature verification: ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	// The signature is a real PKCS#7 blob in the PE file.
	sig := filepath.Join(t.TempDir(), "sig.der")
	if out, err := exec.Command("osslsigncode", "extract-signature", "-in", exe, "-out", sig).CombinedOutput(); err != nil {
		t.Fatalf("extract-signature: %v\n%s", err, out)
	}
	if st, err := os.Stat(sig); err != nil || st.Size() < 500 {
		t.Fatalf("extracted signature: %v %v", st, err)
	}

	// Without a key: a clear error, nothing changed.
	if out, err := script(t, nil, "sign.sh", exe); err == nil || !strings.Contains(out, "no signing key") {
		t.Errorf("no key: %v %s", err, out)
	}
}

func TestBuildSignedMSI(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs bash")
	}
	for _, tool := range []string{"wixl", "msiinfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (apt-get install wixl msitools)", tool)
		}
	}
	env := testCert(t)
	cross := t.TempDir()
	for src := range fileList(t) {
		b, err := os.ReadFile(crossBerth(t))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(cross, filepath.Dir(src)), 0o755)
		os.WriteFile(filepath.Join(cross, src), b, 0o755)
	}
	out := t.TempDir()
	if o, err := script(t, env, "build.sh", "--version", "v1.2.3-4-gabc", "--cross", cross, "--out", out, "--sign"); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, o)
	}
	msi := filepath.Join(out, "berth-v1.2.3-4-gabc-windows-amd64.msi")
	caFile := strings.TrimPrefix(env[2], "BERTH_WIN_CAFILE=")
	if o, err := exec.Command("osslsigncode", "verify", "-CAfile", caFile, "-in", msi).CombinedOutput(); err != nil {
		t.Fatalf("the msi is not signed: %v\n%s", err, o)
	}
	table := func(name string) string {
		b, err := exec.Command("msiinfo", "export", msi, name).Output()
		if err != nil {
			t.Fatalf("msiinfo export %s: %v", name, err)
		}
		return strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	if f := table("File"); !strings.Contains(f, "berth.exe\tBerthExe\tberth.exe\t") {
		t.Errorf("File table:\n%s", f)
	}
	if p := table("Property"); !strings.Contains(p, "ProductVersion\t1.2.3\n") || !strings.Contains(p, "MSIINSTALLPERUSER\t1") {
		t.Errorf("Property table:\n%s", p)
	}
	if d := table("Directory"); !strings.Contains(d, "INSTALLDIR\tProgramsDir\tBerth") || !strings.Contains(d, "ProgramsDir\tLocalAppDataFolder\tPrograms") {
		t.Errorf("Directory table:\n%s", d)
	}
	// berth install runs after InstallFiles, berth uninstall before RemoveFiles, both deferred.
	seq := table("InstallExecuteSequence")
	for _, want := range []string{"BerthInstall\tNOT REMOVE\t4001", "BerthUninstall\tREMOVE=\"ALL\" AND NOT UPGRADINGPRODUCTCODE\t3499", "RemoveFiles\t\t3500", "InstallFiles\t\t4000"} {
		if !strings.Contains(seq, want) {
			t.Errorf("InstallExecuteSequence lacks %q:\n%s", want, seq)
		}
	}
	if ca := table("CustomAction"); !strings.Contains(ca, "BerthInstall\t1042\tberth.exe\tinstall") || !strings.Contains(ca, "BerthUninstall\t1106\tberth.exe\tuninstall") {
		t.Errorf("CustomAction table:\n%s", ca)
	}
	// The signed berth.exe is what the msi carries: extract and verify it.
	x := t.TempDir()
	if o, err := exec.Command("msiextract", "-C", x, msi).CombinedOutput(); err != nil {
		t.Fatalf("msiextract: %v\n%s", err, o)
	}
	var exe string
	filepath.Walk(x, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "berth.exe" {
			exe = p
		}
		return nil
	})
	if exe == "" {
		t.Fatal("no berth.exe in the msi")
	}
	if o, err := exec.Command("osslsigncode", "verify", "-CAfile", caFile, "-in", exe).CombinedOutput(); err != nil {
		t.Fatalf("berth.exe in the msi is not signed: %v\n%s", err, o)
	}
}
