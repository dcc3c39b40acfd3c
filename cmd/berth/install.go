package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/berth-dev/berth/installer/install"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newInstallCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install berth for this user: binaries, guest image, shell completions, docker context",
		Long: `Install berth for the current user; no administrator rights are needed.

It copies this berth (and berth-tray, if it sits beside it) into PREFIX/bin, the guest image
into ~/.berth/_images/<arch>, the bash, zsh and fish completions where those shells look,
and creates the docker context "berth". Everything it adds is recorded in
~/.berth/install.json for berth uninstall. Running it again changes only what differs.
See docs/install.md for every path.`,
		Args: cobra.NoArgs,
		RunE: installAction,
	}
	f := cmd.Flags()
	f.String("prefix", "", `install prefix: binaries go to PREFIX/bin (default ~/.local; %LOCALAPPDATA%\Programs\Berth on Windows)`)
	f.String("image-dir", "", "copy the guest image from this directory (holding vmlinuz, initrd.img, root.img, or <arch>/ with them)")
	f.String("image-url", "", "download the guest image bundle from this https:// URL ({arch} is replaced); checked against the sha256 built into this berth, or --image-sha256")
	f.String("image-sha256", "", "the sha256 of the --image-url bundle, from a source you trust (needed when this berth was built without one)")
	f.String("arch", runtime.GOARCH, "guest architecture of the image to install: amd64 or arm64")
	f.Bool("start-at-login", false, "start the default instance at login (systemd --user unit, launchd agent, or HKCU Run entry)")
	f.Bool("docker-sock-link", false, "also link "+install.DefaultDockerSock+" to berth's docker socket, for tools that ignore docker contexts; needs administrator rights (asks through sudo)")
	f.String("docker-sock-path", install.DefaultDockerSock, "where --docker-sock-link puts the link")
	f.MarkHidden("docker-sock-path")
	return cmd
}

func installAction(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	o := install.Options{Exe: exe, Version: version, Out: cmd.OutOrStdout(), Completions: map[string][]byte{}}
	o.Prefix, _ = f.GetString("prefix")
	o.ImageDir, _ = f.GetString("image-dir")
	o.ImageURL, _ = f.GetString("image-url")
	o.ImageSHA256, _ = f.GetString("image-sha256")
	o.Arch, _ = f.GetString("arch")
	o.StartAtLogin, _ = f.GetBool("start-at-login")
	o.DockerSockLink, _ = f.GetBool("docker-sock-link")
	o.DockerSockPath, _ = f.GetString("docker-sock-path")
	if o.Arch != "amd64" && o.Arch != "arm64" {
		return fmt.Errorf("--arch %q: want amd64 or arm64", o.Arch)
	}
	if o.ImageDir != "" && o.ImageURL != "" {
		return errors.New("--image-dir and --image-url both given: pick one")
	}
	if o.ImageSHA256 != "" && o.ImageURL == "" {
		return errors.New("--image-sha256 is the checksum of the --image-url bundle: pass --image-url too")
	}
	if o.Prefix != "" {
		if o.Prefix, err = filepath.Abs(o.Prefix); err != nil {
			return err
		}
	}
	if o.ImageDir != "" {
		if o.ImageDir, err = filepath.Abs(o.ImageDir); err != nil {
			return err
		}
	}
	o.Binaries, o.Tray = binariesFor(exe)
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if o.Completions[sh], err = completionScript(cmd.Root(), sh); err != nil {
			return err
		}
	}
	o.Sudo = sudoRunner()
	o.Systemctl, o.Launchctl = helper("systemctl"), helper("launchctl")

	out := cmd.OutOrStdout()
	fmt.Fprintln(out, "Installing berth", version)
	res, err := install.Install(cmd.Context(), o)
	if err != nil {
		return err
	}
	if res.Changed == 0 {
		fmt.Fprintf(out, "Nothing to change: berth is already installed (%d items checked). Record: %s\n", res.Unchanged, res.Manifest)
		return nil
	}
	fmt.Fprintf(out, "Installed (%d changes, %d unchanged); record: %s\nStart it with `berth start`, then use `docker --context berth ...`. Remove it all with `berth uninstall`.\n", res.Changed, res.Unchanged, res.Manifest)
	return nil
}

// binariesFor decides how the running berth gets into the prefix, and finds berth-tray:
//   - from Berth.app (…/Berth.app/Contents/Resources/berth) the binaries are linked, so the
//     app's image and signature stay with them and an app update updates the command; the
//     tray is Contents/MacOS/berth-tray;
//   - from a package manager's directory (/usr/bin, /usr/local/bin from a .deb or Homebrew,
//     /opt/…) the binary is left where it is: the package updates and removes it;
//   - anything else (a build, a downloaded binary) is copied, with berth-tray from beside it.
func binariesFor(exe string) (mode, tray string) {
	dir := filepath.Dir(exe)
	if strings.HasSuffix(filepath.Dir(dir), ".app/Contents") || strings.HasSuffix(filepath.Dir(dir), `.app\Contents`) {
		if t := filepath.Join(filepath.Dir(dir), "MacOS", "berth-tray"); isFile(t) {
			tray = t
		}
		return install.BinLink, tray
	}
	if runtime.GOOS != "windows" {
		for _, sys := range []string{"/usr/", "/opt/"} {
			if strings.HasPrefix(exe, sys) {
				return install.BinKeep, ""
			}
		}
	}
	if t := filepath.Join(dir, install.ExeName(runtime.GOOS, "berth-tray")); isFile(t) {
		tray = t
	}
	return install.BinCopy, tray
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// helper returns the path of an OS helper berth may call, or "" when it is absent.
func helper(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// sudoRunner runs a command through sudo on the user's terminal, so the password prompt
// is seen and answered there; without a terminal (or sudo) it is nil and the caller
// prints the command for the user to run.
func sudoRunner() func(ctx context.Context, argv ...string) error {
	sudo := helper("sudo")
	if sudo == "" || runtime.GOOS == "windows" || !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil
	}
	return func(ctx context.Context, argv ...string) error {
		c := exec.CommandContext(ctx, sudo, argv...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		return c.Run()
	}
}
