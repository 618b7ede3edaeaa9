package election

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/transport"
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

// peerFailures are raft's messages saying a peer did not answer, with the argument that
// names the peer. While a peer is down raft repeats them on every retry of every group;
// peerStates turns them into one line when the peer stops answering and one when it
// answers again.
var peerFailures = map[string]string{
	"failed to heartbeat to":                  "peer",
	"failed to appendEntries to":              "peer",
	"failed to pipeline appendEntries":        "peer",
	"failed to start pipeline replication to": "peer",
	"failed to send snapshot to":              "peer",
	"failed to install snapshot":              "peer",
	"failed to make requestVote RPC":          "target",
	"failed to contact":                       "server-id",
}

// peerAnswers are raft's messages (at Info) showing a peer answers, with the argument
// naming it: replication to it works again, or this node follows it as its leader.
var peerAnswers = map[string]string{
	"pipelining replication":  "peer",
	"entering follower state": "leader-address",
}

var peers = newPeerStates(30 * time.Second)

// peerStates tracks, process-wide, which peers raft found unreachable. A peer that
// raft stopped complaining about for quiet without saying it answers (this node stopped
// leading, say) is forgotten, so a later outage is reported again.
type peerStates struct {
	quiet time.Duration
	mu    sync.Mutex
	down  map[string]*outage
	addrs map[raft.ServerID]raft.ServerAddress // to name a peer raft gave by ID only
}

type outage struct {
	since, last time.Time
	failures    int // reports after the first, not logged
}

func newPeerStates(quiet time.Duration) *peerStates {
	return &peerStates{quiet: quiet, down: map[string]*outage{}, addrs: map[raft.ServerID]raft.ServerAddress{}}
}

// peer returns the address raft's argument names, or "" if args name none. p.mu is held.
func (p *peerStates) peer(key string, args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] != key {
			continue
		}
		switch v := args[i+1].(type) {
		case raft.Server:
			p.addrs[v.ID] = v.Address
			return string(v.Address)
		case raft.ServerAddress:
			return string(v)
		case raft.ServerID:
			if a, ok := p.addrs[v]; ok {
				return string(a)
			}
			return string(v)
		default:
			return fmt.Sprint(v)
		}
	}
	return ""
}

// failed records a failure report whose args name the peer under key. It reports
// whether that is the first report of an outage (to be logged), and whether args named
// a peer at all (tracked).
func (p *peerStates) failed(key string, args []any, now time.Time) (first, tracked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := p.peer(key, args)
	if name == "" {
		return false, false
	}
	o := p.down[name]
	if o == nil || now.Sub(o.last) > p.quiet {
		p.down[name] = &outage{since: now, last: now}
		return true, true
	}
	o.last = now
	o.failures++
	return false, true
}

// answered records that the peer args name under key answers, returning the outage it
// ends (nil if none).
func (p *peerStates) answered(key string, args []any) (string, *outage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := p.peer(key, args)
	o := p.down[name]
	delete(p.down, name)
	return name, o
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
	if key, ok := peerAnswers[msg]; ok {
		// Seen at any level: it ends an outage that was reported at Warn or Error.
		if name, o := peers.answered(key, args); o != nil {
			h.l.Warn("peer answers again", "peer", name, "down_for", time.Since(o.since).Round(time.Millisecond), "failures_not_logged", o.failures)
		}
	}
	if !h.enabled(level) {
		return
	}
	all := append(append([]any{}, h.args...), args...)
	first, tracked := false, false
	if key, ok := peerFailures[msg]; ok && level >= hclog.Warn {
		if errors.Is(argError(args), transport.ErrUnknownGroup) {
			// The peer answers; it only does not run this group (yet): a member of a
			// group created or moved a moment ago that has not opened it, or one removed.
			// Every new group whose leader is elected before its last member opens says
			// so once.
			level = hclog.Warn
			all = append(all, "note", "the peer answers but does not run this group: a replica not yet opened there, or removed")
		} else {
			first, tracked = peers.failed(key, args, time.Now())
		}
	}
	switch {
	case tracked && !first:
		return
	case tracked:
		all = append(all, "note", "peer not answering; no more failures to reach it are logged until it answers again")
	case level >= hclog.Warn:
		ok, dropped := repeats.allow(msg, time.Now())
		if !ok {
			return
		}
		if dropped > 0 {
			all = append(all, "repeats_dropped", dropped)
		}
	}
	if h.name != "" {
		msg = h.name + ": " + msg
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

// argError returns the value of the "error" argument of a raft log call, if it is an
// error.
func argError(args []any) error {
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "error" {
			err, _ := args[i+1].(error)
			return err
		}
	}
	return nil
}
