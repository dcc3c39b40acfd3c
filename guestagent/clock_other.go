//go:build !linux

package guestagent

import "github.com/berth-dev/berth/guestagent/proto"

func (s *Server) clock(int64) (*proto.ClockResult, error) { return nil, errNotLinux }
