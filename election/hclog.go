package election

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// slogHCLog adapts slog to the hclog.Logger interface raft requires. Raft reports every
// election step and replication hiccup at Info; at the rate of many groups per process
// that drowns everything else, so raft's Info is demoted to slog Debug. Warn and Error
// keep their level.
type slogHCLog struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
}

// repeats limits raft's repeated warnings and errors to one line per message a second,
// process-wide: when a peer dies, every group it was in logs "failed to heartbeat to"
// on each retry, thousands of lines a second with many groups, exactly when the CPU is
// needed for the elections.
var repeats = &repeatLimiter{every: time.Second, last: map[string]time.Time{}, dropped: map[string]int{}}

type repeatLimiter struct {
	every   time.Duration
	mu      sync.Mutex
	last    map[string]time.Time
	dropped map[string]int
}

// allow reports whether msg may be logged now, and how many were dropped since the last.
func (r *repeatLimiter) allow(msg string, now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.last[msg]) < r.every {
		r.dropped[msg]++
		return false, 0
	}
	n := r.dropped[msg]
	delete(r.dropped, msg)
	r.last[msg] = now
	return true, n
}

func newHCLog(l *slog.Logger) hclog.Logger {
	return &slogHCLog{l: l, level: hclog.Debug}
}

func (h *slogHCLog) slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug - 2
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *slogHCLog) enabled(level hclog.Level) bool {
	return level >= h.level && h.l.Enabled(context.Background(), h.slogLevel(level))
}

func (h *slogHCLog) Log(level hclog.Level, msg string, args ...any) {
	if !h.enabled(level) {
		return
	}
	if h.name != "" {
		msg = h.name + ": " + msg
	}
	all := append(append([]any{}, h.args...), args...)
	if level >= hclog.Warn {
		ok, dropped := repeats.allow(msg, time.Now())
		if !ok {
			return
		}
		if dropped > 0 {
			all = append(all, "repeats_dropped", dropped)
		}
	}
	for i, a := range all {
		// raft formats some values lazily with hclog.Fmt.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				all[i] = fmt.Sprintf(s, f[1:]...)
			}
		}
	}
	h.l.Log(context.Background(), h.slogLevel(level), msg, all...)
}

func (h *slogHCLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHCLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHCLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHCLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHCLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *slogHCLog) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *slogHCLog) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *slogHCLog) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *slogHCLog) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *slogHCLog) IsError() bool { return h.enabled(hclog.Error) }

func (h *slogHCLog) ImpliedArgs() []any { return h.args }

func (h *slogHCLog) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}

func (h *slogHCLog) Name() string { return h.name }

func (h *slogHCLog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *slogHCLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *slogHCLog) SetLevel(level hclog.Level) { h.level = level }
func (h *slogHCLog) GetLevel() hclog.Level      { return h.level }

func (h *slogHCLog) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *slogHCLog) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return writerFunc(func(p []byte) (int, error) {
		h.Log(level, strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ hclog.Logger = (*slogHCLog)(nil)
