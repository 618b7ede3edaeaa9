//go:build !linux

package timerslack

import (
	"errors"
	"time"
)

var errUnsupported = errors.New("timer slack is only set on Linux")

func get() (time.Duration, error) { return 0, errUnsupported }

func execWithSlack(time.Duration, string, []string, []string) error { return errUnsupported }
