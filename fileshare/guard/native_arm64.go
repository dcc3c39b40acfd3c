//go:build linux

package guard

var nativeArch = &archARM64
