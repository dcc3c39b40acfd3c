package install

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// removeFile removes an installed file. Windows refuses to delete a running .exe (the
// berth.exe running `berth uninstall`) but lets it be renamed, so it is moved into the
// temporary directory, where it no longer shadows anything and the OS's temp cleanup
// deletes it.
func removeFile(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	aside, terr := os.CreateTemp("", "berth-uninstalled-*-"+filepath.Base(path))
	if terr != nil {
		return err
	}
	aside.Close()
	os.Remove(aside.Name())
	if rerr := os.Rename(path, aside.Name()); rerr != nil {
		return err
	}
	return nil
}
