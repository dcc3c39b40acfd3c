package localsock

import "golang.org/x/sys/unix"

// peerUID is the uid of the process at the other end of a unix socket: LOCAL_PEERCRED,
// what getpeereid(3) reads on macOS.
func peerUID(fd int) (uint32, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}
