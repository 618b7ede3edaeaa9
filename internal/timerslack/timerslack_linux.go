package timerslack

import (
	"errors"
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

// errNotMainThread: the thread that execs becomes the process's only thread, and
// per-thread settings of the main thread (the parent-death signal a supervisor set,
// which `quorumq dev` relies on to take its children down with it) would be lost.
var errNotMainThread = errors.New("not on the main thread (lock the main goroutine to it in an init function)")

// execWithSlack sets the slack on this goroutine's thread and execs from that thread.
// Should the exec fail, the thread gets its old slack back.
func execWithSlack(d time.Duration, exe string, args, env []string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if syscall.Gettid() != syscall.Getpid() {
		return errNotMainThread
	}
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
