package daemon

// setUmask: Windows has no umask; the state directory's ACL keeps sockets private.
func setUmask() {}
