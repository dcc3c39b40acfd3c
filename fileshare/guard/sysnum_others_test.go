//go:build linux && !amd64 && !arm64

package guard

var nativeNumbers map[string]uint32

var legacyCalls []legacyCall
