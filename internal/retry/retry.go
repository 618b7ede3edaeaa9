// Package retry is the one backoff every retry loop of the project shares: waits that
// start at First and double up to Max, optionally jittered, bounded by a number of
// attempts or by elapsed time, and cut short by the context. Loops whose every turn
// is the same use Do; loops that decide per failure what to do next (follow a
// redirect at once, log, count) hold a Backoff and call Wait between attempts.
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Policy says how long to wait between attempts and when to give up.
type Policy struct {
	First time.Duration // the first wait
	Max   time.Duration // waits double up to this
	// Jitter draws each wait uniformly from [d/2, 3d/2) around the doubling d, so that
	// clients that failed together (a failover) come back spread out.
	Jitter bool
	// MaxAttempts bounds the attempts (Wait refuses the wait before attempt
	// MaxAttempts+1); 0 leaves them unbounded.
	MaxAttempts int
	// MaxElapsed bounds the time since Start, waits included; 0 leaves it unbounded.
	MaxElapsed time.Duration
}

// ErrExhausted is returned by Wait (and, joined with the last error, by Do) once the
// policy's attempts or elapsed time are used up.
var ErrExhausted = errors.New("retry: attempts exhausted")

// Backoff is the state of one retry loop.
type Backoff struct {
	p        Policy
	next     time.Duration
	attempts int // attempts made, counting the one before each Wait
	start    time.Time
}

// Start begins a retry loop; the first attempt runs before any Wait.
func (p Policy) Start() *Backoff {
	return &Backoff{p: p, next: p.First, start: time.Now()}
}

// Next returns the wait before the next attempt and doubles the one after it, or false
// when the policy allows no further attempt.
func (b *Backoff) Next() (time.Duration, bool) {
	b.attempts++
	if b.p.MaxAttempts > 0 && b.attempts >= b.p.MaxAttempts {
		return 0, false
	}
	d := b.next
	b.next = min(2*b.next, b.p.Max)
	if b.p.Jitter && d > 0 {
		d = time.Duration(rand.Int64N(int64(d))) + d/2
	}
	if b.p.MaxElapsed > 0 && time.Since(b.start)+d > b.p.MaxElapsed {
		return 0, false
	}
	return d, true
}

// Wait sleeps for Next's wait. It returns ctx's error if ctx ends first, and
// ErrExhausted when the policy allows no further attempt.
func (b *Backoff) Wait(ctx context.Context) error {
	d, ok := b.Next()
	if !ok {
		return ErrExhausted
	}
	return Sleep(ctx, d)
}

// Reset starts the waits over from First, as after a success in a loop that runs on.
func (b *Backoff) Reset() {
	b.next, b.attempts, b.start = b.p.First, 0, time.Now()
}

// Sleep waits d, or until ctx ends (then returning its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent marks an error that no retry can fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err so that Do returns it at once instead of retrying (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Do runs op until it returns nil or a Permanent error (returned without the mark),
// ctx ends, or the policy gives up; then it returns op's last error joined with why it
// stopped.
func Do(ctx context.Context, p Policy, op func(ctx context.Context) error) error {
	b := p.Start()
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if werr := b.Wait(ctx); werr != nil {
			return errors.Join(werr, err)
		}
	}
}
