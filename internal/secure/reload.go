package secure

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// reloader keeps what load reads from files current without a restart: at most once
// per reloadEvery (checked when the value is used: at a handshake) it compares the
// files' modification times and sizes with those of the last load, and loads again when
// one changed. A load that fails (a rotation half done: the certificate written, the
// key not yet) keeps the previous value and is tried again at the next check, so the
// process never serves a broken pair.
type reloader[T any] struct {
	what  string
	paths []string
	load  func() (T, error)
	log   *slog.Logger

	mu      sync.Mutex
	cur     T
	stamps  []stamp
	checked time.Time
}

type stamp struct {
	mod  time.Time
	size int64
}

func newReloader[T any](what string, paths []string, load func() (T, error)) (*reloader[T], error) {
	r := &reloader[T]{what: what, paths: paths, load: load, log: slog.Default()}
	stamps, err := r.stat()
	if err != nil {
		return nil, err
	}
	if r.cur, err = load(); err != nil {
		return nil, err
	}
	r.stamps, r.checked = stamps, time.Now()
	return r, nil
}

func (r *reloader[T]) stat() ([]stamp, error) {
	out := make([]stamp, len(r.paths))
	for i, p := range r.paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("secure: %s: %w", r.what, err)
		}
		out[i] = stamp{st.ModTime(), st.Size()}
	}
	return out, nil
}

// get is the current value, loaded again first when the files changed.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reloadEvery {
		r.checked = now
		if stamps, err := r.stat(); err == nil && !equalStamps(stamps, r.stamps) {
			r.reloadLocked(stamps)
		}
	}
	return r.cur
}

// Reload loads the files now, changed or not (SIGHUP).
func (r *reloader[T]) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps, err := r.stat()
	if err != nil {
		r.log.Error("secure: reload failed; keeping the credentials in use", "what", r.what, "err", err)
		return err
	}
	return r.reloadLocked(stamps)
}

func (r *reloader[T]) reloadLocked(stamps []stamp) error {
	v, err := r.load()
	if err != nil {
		r.log.Error("secure: reload failed; keeping the credentials in use", "what", r.what, "err", err)
		return err
	}
	r.cur, r.stamps = v, stamps
	r.log.Info("secure: reloaded", "what", r.what, "files", r.paths)
	return nil
}

func equalStamps(a, b []stamp) bool {
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// Reloader is what a process reloads on SIGHUP: its node credentials and the public
// API's certificate.
type Reloader interface {
	Reload() error
}

// Reloaders are c's reloadable credentials (none for a nil Config).
func (c *Config) Reloaders() []Reloader {
	if c == nil {
		return nil
	}
	out := []Reloader{c.Node}
	if c.Public != nil {
		out = append(out, c.Public)
	}
	return out
}

// SetLogger sends the reload messages of c's credentials to l (before c is in use).
func (c *Config) SetLogger(l *slog.Logger) {
	if c == nil {
		return
	}
	c.Node.creds.log = l
	if c.Public != nil {
		c.Public.r.log = l
	}
}

// ReloadAll reloads every one of rs and joins their errors.
func ReloadAll(rs []Reloader) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.Reload())
	}
	return errors.Join(errs...)
}
