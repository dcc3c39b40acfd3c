//go:build linux

package guard

var nativeArch = &archAMD64
