package timerslack

import (
	"runtime"
	"syscall"
	"time"
)

const (
	prSetTimerSlack = 29 // PR_SET_TIMERSLACK
	prGetTimerSlack = 30 // PR_GET_TIMERSLACK
)

// get is the calling thread's slack.
func get() (time.Duration, error) {
	ns, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return time.Duration(ns), nil
}

func set(d time.Duration) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(d), 0); errno != 0 {
		return errno
	}
	return nil
}

// execWithSlack sets the slack on this goroutine's thread and execs from that thread.
// Should the exec fail, the thread gets its old slack back.
func execWithSlack(d time.Duration, exe string, args, env []string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := get()
	if err != nil {
		return err
	}
	if err := set(d); err != nil {
		return err
	}
	err = syscall.Exec(exe, args, env)
	_ = set(old)
	return err
}
