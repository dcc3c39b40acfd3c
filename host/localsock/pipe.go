package localsock

import (
	"fmt"
	"regexp"
	"strings"
)

// The Windows side of the docker socket is a named pipe, which is what the docker CLI's
// npipe:// endpoints speak (docker context: host=npipe:////./pipe/<name>). ListenPipe
// (pipe_windows.go) creates it; the helpers here are plain strings so they are tested on
// every OS.

// PipePrefix is the local named-pipe namespace.
const PipePrefix = `\\.\pipe\`

var pipeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$`)

// PipePath turns a pipe name ("berth-default") or a full path (\\.\pipe\berth-default,
// //./pipe/berth-default) into the full path, rejecting names that would leave the
// namespace or carry separators.
func PipePath(name string) (string, error) {
	n := strings.ReplaceAll(name, "/", `\`)
	n = strings.TrimPrefix(n, PipePrefix)
	if !pipeNameRE.MatchString(n) {
		return "", fmt.Errorf("invalid pipe name %q", name)
	}
	return PipePrefix + n, nil
}

// DockerHost is the DOCKER_HOST / docker context endpoint for the pipe path.
func DockerHost(pipePath string) string {
	return "npipe://" + strings.ReplaceAll(pipePath, `\`, "/")
}

var sidRE = regexp.MustCompile(`^S-1-\d+(-\d+)+$`)

// UserOnlySDDL is a protected DACL (P: no inherited entries) with one entry granting
// GENERIC_ALL to sid, so only that user (elevated or not) may connect: the Windows
// equivalent of a 0600 unix socket. Administrators and SYSTEM get no entry on purpose.
func UserOnlySDDL(sid string) (string, error) {
	if !sidRE.MatchString(sid) {
		return "", fmt.Errorf("invalid SID %q", sid)
	}
	return "D:P(A;;GA;;;" + sid + ")", nil
}
