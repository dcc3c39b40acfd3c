//go:build windows

package localsock

import (
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// ListenPipe listens on the named pipe name (\\.\pipe\ is added when missing) so that
// only the current user can connect. The pipe is in message mode with 64 KiB buffers, as
// dockerd's own npipe listener: in go-winio only message-mode pipes carry a half-close
// (CloseWrite), which docker attach and `run -i` need.
func ListenPipe(name string) (net.Listener, error) {
	path, err := PipePath(name)
	if err != nil {
		return nil, err
	}
	user, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("reading the current user's SID: %w", err)
	}
	sddl, err := UserOnlySDDL(user.User.Sid.String())
	if err != nil {
		return nil, err
	}
	l, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: sddl,
		MessageMode:        true,
		InputBufferSize:    64 << 10,
		OutputBufferSize:   64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return l, nil
}
