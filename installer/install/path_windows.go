package install

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// The user's PATH lives in HKCU\Environment\Path (REG_EXPAND_SZ or REG_SZ); berth's bin
// directory is appended to it, and removed again on uninstall, leaving every other entry
// exactly as it was.
const envKey = "Environment"

func readUserPath(k registry.Key) (string, uint32, error) {
	v, typ, err := k.GetStringValue("Path")
	if errors.Is(err, registry.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return "", registry.EXPAND_SZ, nil
	}
	return v, typ, err
}

func writeUserPath(k registry.Key, v string, typ uint32) error {
	var err error
	if typ == registry.SZ {
		err = k.SetStringValue("Path", v)
	} else {
		err = k.SetExpandStringValue("Path", v)
	}
	if err == nil {
		broadcastEnvChange()
	}
	return err
}

func samePathEntry(a, b string) bool {
	return strings.EqualFold(filepath.Clean(strings.TrimSpace(a)), filepath.Clean(b))
}

// addUserPath appends dir to the user's PATH unless it is there; it reports a change.
func addUserPath(dir string) (bool, error) {
	k, _, err := registry.CreateKey(registry.CURRENT_USER, envKey, registry.QUERY_VALUE|registry.SET_VALUE)
	if err != nil {
		return false, err
	}
	defer k.Close()
	cur, typ, err := readUserPath(k)
	if err != nil {
		return false, err
	}
	for _, e := range strings.Split(cur, ";") {
		if samePathEntry(e, dir) {
			return false, nil
		}
	}
	if cur != "" && !strings.HasSuffix(cur, ";") {
		cur += ";"
	}
	return true, writeUserPath(k, cur+dir, typ)
}

// removeUserPath drops dir from the user's PATH; it reports whether it was there.
func removeUserPath(dir string) (bool, error) {
	k, err := registry.OpenKey(registry.CURRENT_USER, envKey, registry.QUERY_VALUE|registry.SET_VALUE)
	if err != nil {
		return false, nil
	}
	defer k.Close()
	cur, typ, err := readUserPath(k)
	if err != nil || cur == "" {
		return false, err
	}
	var keep []string
	found := false
	for _, e := range strings.Split(cur, ";") {
		if samePathEntry(e, dir) {
			found = true
			continue
		}
		keep = append(keep, e)
	}
	if !found {
		return false, nil
	}
	return true, writeUserPath(k, strings.Join(keep, ";"), typ)
}

// broadcastEnvChange tells Explorer (and so new terminals) that the environment changed,
// as the System Properties dialog does.
func broadcastEnvChange() {
	env, _ := windows.UTF16PtrFromString("Environment")
	const hwndBroadcast, wmSettingChange, smtoAbortIfHung = 0xffff, 0x001A, 0x0002
	proc := syscall.NewLazyDLL("user32.dll").NewProc("SendMessageTimeoutW")
	var result uintptr
	proc.Call(hwndBroadcast, wmSettingChange, 0, uintptr(unsafe.Pointer(env)), smtoAbortIfHung, 5000, uintptr(unsafe.Pointer(&result)))
}
