package proto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The channel handshake runs before yamux on every new session, on both sides.
//
// The agent channel may be a byte stream that outlives a session: the virtio-serial port
// keeps the host's connection when the agent's serve process restarts, and it may still hold
// bytes of the old session. So the two sides first agree on a clean starting point. The
// agent writes Hello: to a host still in an old session this is no valid yamux frame (its
// first byte is no yamux version), so that session ends at once and the host reconnects.
// Then the agent discards input up to a line "BERTH-SYNC <nonce>", answers
// "BERTH-OK <nonce>" and starts its yamux server. The host writes "BERTH-SYNC <nonce>" with
// a fresh nonce and discards input up to its "BERTH-OK <nonce>" line; then it starts its
// yamux client. Both read byte by byte, so neither consumes a byte of the session.
const (
	Hello      = "\nBERTH-HELLO\n"
	syncPrefix = "BERTH-SYNC "
	okPrefix   = "BERTH-OK "
	// maxSyncLine bounds what counts as a line while discarding; longer runs are garbage.
	maxSyncLine = 128
)

// HostHandshake performs the host's side on conn; it gives up when ctx ends.
func HostHandshake(ctx context.Context, conn net.Conn) error {
	var n [8]byte
	rand.Read(n[:])
	nonce := hex.EncodeToString(n[:])
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer func() {
		if stop() {
			conn.SetDeadline(time.Time{})
		}
	}()
	if _, err := io.WriteString(conn, "\n"+syncPrefix+nonce+"\n"); err != nil {
		return handshakeErr(ctx, err)
	}
	want := []byte(okPrefix + nonce)
	err := discardUntil(conn, func(line []byte) bool { return bytes.Equal(line, want) })
	return handshakeErr(ctx, err)
}

// AgentHandshake performs the agent's side on rw and returns once the host synced.
func AgentHandshake(rw io.ReadWriter) error {
	if _, err := io.WriteString(rw, Hello); err != nil {
		return err
	}
	var nonce []byte
	err := discardUntil(rw, func(line []byte) bool {
		if rest, ok := bytes.CutPrefix(line, []byte(syncPrefix)); ok && len(rest) > 0 {
			nonce = append([]byte(nil), rest...)
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(rw, okPrefix+string(nonce)+"\n")
	return err
}

// discardUntil reads lines byte by byte until match accepts one.
func discardUntil(r io.Reader, match func([]byte) bool) error {
	var line []byte
	var b [1]byte
	long := false // the line ran past maxSyncLine: garbage, never a match
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return err
		}
		switch {
		case b[0] == '\n':
			if !long && match(line) {
				return nil
			}
			line, long = line[:0], false
		case len(line) < maxSyncLine:
			line = append(line, b[0])
		default:
			long = true
		}
	}
}

func handshakeErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("agent channel closed during the handshake: %w", err)
	}
	return fmt.Errorf("agent channel handshake: %w", err)
}
