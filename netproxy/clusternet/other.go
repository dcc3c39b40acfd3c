//go:build !darwin && !linux

package clusternet

import (
	"context"
	"log/slog"
	"net"
	"os"
)

// Member is what the server needs to know about a member it admits.
type Member struct{ MAC string }

// Switch is unavailable here.
type Switch struct{}

// NewSwitch returns a switch that admits nobody.
func NewSwitch(*slog.Logger) *Switch { return &Switch{} }

// Attach fails: there are no unix datagram sockets.
func (s *Switch) Attach(context.Context, string, string, *os.File) error { return ErrUnsupported }

// Links lists nothing.
func (s *Switch) Links() []LinkStatus { return nil }

// Close does nothing.
func (s *Switch) Close() {}

// Server is unavailable here.
type Server struct {
	Switch *Switch
	Log    *slog.Logger
	Admit  func(name string) (Member, error)
	Stop   func()
}

// Serve fails.
func (s *Server) Serve(context.Context, net.Listener) error { return ErrUnsupported }

// Link is unavailable here.
type Link struct{}

// Done is closed.
func (l *Link) Done() <-chan struct{} { c := make(chan struct{}); close(c); return c }

// Close does nothing.
func (l *Link) Close() error { return nil }

// Attach fails.
func Attach(context.Context, string, string, *os.File) (*Link, error) { return nil, ErrUnsupported }

// Status fails.
func Status(context.Context, string) (Reply, error) { return Reply{}, ErrUnsupported }

// Stop fails.
func Stop(context.Context, string) (int, error) { return 0, ErrUnsupported }
