//go:build !linux

package proto

// waitHangup: hangups after a half-close are only watched on Linux; elsewhere a vanished
// client is noticed on the next write.
func waitHangup(c HalfCloser) bool { return false }
