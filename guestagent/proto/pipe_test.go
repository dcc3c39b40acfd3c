package proto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto/prototest"
	"github.com/hashicorp/yamux"
)

func yamuxPair(t *testing.T) (client, server *yamux.Session) {
	t.Helper()
	a, b := net.Pipe()
	client, _ = yamux.Client(a, YamuxConfig())
	server, _ = yamux.Server(b, YamuxConfig())
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestPipeClientGoneMidStream is the `docker logs -f` + Ctrl-C case: the engine keeps
// writing, the client closes its socket. Both pipes (host: client<->stream, agent:
// stream<->engine) must end, the engine connection must be closed, and the agent's end
// must be told through OnAbort; before, the agent's pipe waited forever on a full window.
func TestPipeClientGoneMidStream(t *testing.T) {
	client, server := yamuxPair(t)
	engineSide, engine := prototest.UnixPair(t)
	userSide, user := prototest.UnixPair(t)

	// The "engine": writes until its connection is closed.
	engineClosed := make(chan struct{})
	go func() {
		buf := bytes.Repeat([]byte("log line\n"), 4096)
		for {
			if _, err := engine.Write(buf); err != nil {
				close(engineClosed)
				return
			}
		}
	}()
	agentDone := make(chan error, 1)
	var agentStream *yamux.Stream
	accepted := make(chan struct{})
	go func() {
		st, err := server.AcceptStream()
		if err != nil {
			agentDone <- err
			return
		}
		agentStream = st
		close(accepted)
		agentDone <- Pipe(context.Background(), HalfStream{Stream: st}, engineSide)
	}()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	var aborted atomic.Int32
	hostDone := make(chan error, 1)
	go func() {
		hostDone <- Pipe(context.Background(), userSide, HalfStream{Stream: st, OnAbort: func() {
			aborted.Add(1)
			// What the agent does on TypeCancel: abort its own pipe's stream end.
			<-accepted
			HalfStream{Stream: agentStream}.Abort()
		}})
	}()
	// The client reads a little, then goes away.
	io.ReadFull(user, make([]byte, 64<<10))
	user.Close()

	for name, ch := range map[string]chan error{"host": hostDone, "agent": agentDone} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s pipe did not end after the client left", name)
		}
	}
	select {
	case <-engineClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("the engine connection was not closed")
	}
	if n := aborted.Load(); n != 1 {
		t.Errorf("OnAbort ran %d times, want 1", n)
	}
	if n := client.NumStreams() + server.NumStreams(); n != 0 {
		t.Errorf("%d yamux streams left open", n)
	}
}

// TestPipeHalfCloseKeepsReply: a clean EOF from one side is a half-close, never a teardown.
func TestPipeHalfCloseKeepsReply(t *testing.T) {
	aSide, a := prototest.UnixPair(t)
	bSide, b := prototest.UnixPair(t)
	done := make(chan error, 1)
	go func() { done <- Pipe(context.Background(), aSide, bSide) }()
	go func() {
		in, _ := io.ReadAll(b)
		time.Sleep(50 * time.Millisecond) // the reply comes after the request's EOF
		b.Write(bytes.ToUpper(in))
		b.Close()
	}()
	a.Write([]byte("ping"))
	a.CloseWrite()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "PING" {
		t.Fatalf("got %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Pipe: %v", err)
	}
}

func TestPipeContextEnds(t *testing.T) {
	aSide, a := prototest.UnixPair(t)
	bSide, _ := prototest.UnixPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Pipe(ctx, aSide, bSide) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe outlived its context")
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Error("the client's connection is still open")
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	big := strings.Repeat("y", 200<<10) // over the old 64 KiB limit, under MaxLine
	in := "a\n" + big + "\n" + long + "\nb\n\nc"
	var got []string
	var errs int
	err := ReadLines(strings.NewReader(in), func(line []byte, err error) {
		if err != nil {
			if !errors.Is(err, ErrLineTooLong) {
				t.Errorf("unexpected error %v", err)
			}
			errs++
			return
		}
		got = append(got, string(line))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", big, "b", ""}
	if len(got) != len(want) || got[0] != "a" || got[1] != big || got[2] != "b" || got[3] != "" {
		t.Errorf("got %d lines %.20q, want %d", len(got), got, len(want))
	}
	if errs != 1 {
		t.Errorf("%d too-long lines reported, want 1", errs)
	}
}

// TestHandshakeSkipsStaleBytes: whatever an old session left on the channel is skipped
// on both sides, and both then agree on where the new session starts.
func TestHandshakeSkipsStaleBytes(t *testing.T) {
	h, g := prototest.UnixPair(t)
	agentErr := make(chan error, 1)
	go func() {
		// Stale frames of an earlier session, then the handshake, then the new session.
		g.Write([]byte{0, 1, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3, 'x', '\n', 0xff})
		if err := AgentHandshake(g); err != nil {
			agentErr <- err
			return
		}
		g.Write([]byte("SESSION"))
		agentErr <- nil
	}()
	// The host's stale bytes arrive first; the agent discards them (an empty nonce too).
	h.Write([]byte("\x00\x02garbage\nBERTH-SYNC \n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := HostHandshake(ctx, h); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(h, got); err != nil || string(got) != "SESSION" {
		t.Fatalf("after the handshake got %q, %v", got, err)
	}
	if err := <-agentErr; err != nil {
		t.Fatal(err)
	}
}

func TestHostHandshakeGivesUp(t *testing.T) {
	h, _ := net.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := HostHandshake(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}
