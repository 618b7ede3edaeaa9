// Package timerslack lets a process's threads sleep with a coarser timer slack, so that
// the kernel wakes it once for many timers that fall due close together.
//
// A broker with thousands of idle partitions runs several raft timers per group
// (heartbeats every HeartbeatTimeout/10–/5 per follower, lease checks, follower
// timeouts), each at a random time: the process woke over a thousand times a second,
// and going idle and waking again (the scheduler's findRunnable, epoll_wait, futex)
// was a third of its idle CPU. With a slack of 20 ms the kernel may let an idle
// thread's sleep run up to 20 ms past its timeout and serve everything due by then in
// one wake (`quorumq bench idle --partitions 1000`: 7.4–7.8 % of a core per broker
// with the default 50 µs, 4.5–4.9 % with 20 ms; docs/benchmarks.md). Work that
// arrives over the network wakes a thread at once whatever the slack; only sleeps that
// end on a timer may end later, by at most the slack.
package timerslack

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// envApplied marks a process re-executed by Apply, so that it never re-executes again.
const envApplied = "QUORUMQ_TIMERSLACK_APPLIED"

// Apply gives every thread of this process the timer slack d, re-executing the program
// when its threads do not have it. A thread takes its slack from the thread that
// creates it and keeps it across exec, and Go starts threads before main runs, so only
// a program started with the slack has it on every thread: Apply sets it on its own
// thread and execs the same program with the same arguments and environment (the
// process keeps its pid). It must run on the main thread (an init function's
// runtime.LockOSThread keeps the main goroutine there): the exec'ing thread becomes the
// process, and the main thread's own settings, such as a parent-death signal, would be
// lost from any other. It returns nil when the slack is already d (or d is 0: leave
// the kernel's default), and an error, the process unchanged, when it cannot.
func Apply(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if d > time.Second {
		return fmt.Errorf("timer slack %s: give at most 1s", d)
	}
	cur, err := get()
	if err != nil || cur == d {
		return err
	}
	if _, again := os.LookupEnv(envApplied); again {
		return fmt.Errorf("timer slack is %s after re-executing with %s", cur, d)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(os.Environ(), envApplied+"="+strconv.FormatInt(int64(d), 10))
	return execWithSlack(d, exe, os.Args, env)
}
