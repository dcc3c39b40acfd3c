//go:build !windows

package install

import "os"

// removeFile removes an installed file. Unix lets a running binary be unlinked.
func removeFile(path string) error { return os.Remove(path) }
