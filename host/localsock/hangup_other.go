//go:build !linux

package localsock

import "net"

func canWatchHangup(net.Conn) bool { return false }

func hungUp(net.Conn) bool { return false }
