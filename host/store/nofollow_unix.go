//go:build !windows

package store

import "syscall"

const noFollow = syscall.O_NOFOLLOW
