package fileshare

// DefaultFor returns the default shares on goos for a user whose home is home: what
// Docker Desktop shares there, each at the same path in the VM, where that hides none of
// the Linux guest's own directories.
//
//   - macOS: /Users, /Volumes, /private and /var/folders (Docker Desktop's list). /tmp
//     and /var are symlinks into /private there; a bind mount of /tmp/x is translated to
//     /private/tmp/x on the docker socket (host/dockerproxy). Only /Users replays changes
//     to the guest: walking /private, /var/folders and every mounted volume for change
//     notification costs more than it gives (turn it on per share with noNotify: false).
//   - Linux: the home directory.
//   - Windows: the user profile (os.UserHomeDir is %USERPROFILE%).
//
// An empty home (no user directory) shares nothing on Linux and Windows.
func DefaultFor(goos, home string) []Share {
	switch goos {
	case "darwin":
		return []Share{
			{Path: "/Users"},
			{Path: "/Volumes", NoNotify: true},
			{Path: "/private", NoNotify: true},
			{Path: "/var/folders", NoNotify: true},
		}
	default:
		if home == "" {
			return nil
		}
		return []Share{{Path: home}}
	}
}
