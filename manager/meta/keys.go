package meta

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// Idempotency keys: a client's write carries an Idempotency-Key, and the managers run
// its command once per key. The table lives in the replicated state, so a retry finds
// the first outcome through write-manager changes and restarts. Apply reads no clock:
// each Keyed command carries the time of the manager that built it, and the table
// ages by the latest such time it has seen.
const (
	// KeyRetention is how long a key is remembered (at least: it goes on the first
	// keyed command after that). The issue asks for at least 10 minutes.
	KeyRetention = 15 * time.Minute
	// MaxKeys bounds the table; past it the oldest key goes first, even if younger
	// than KeyRetention (at over 55 keyed writes a second).
	MaxKeys = 50000
	// MaxKeyLen bounds one key (a UUID is 36 characters).
	MaxKeyLen = 200
)

// KeyEntry is the first outcome of a keyed command.
type KeyEntry struct {
	At     int64  `json:"at"`     // Keyed.At of the first command (Unix ms)
	Sum    string `json:"sum"`    // hex SHA-256 of the command, so a key reused for another request is refused
	Result Result `json:"result"` // what Apply answered
}

// keyed runs c.Cmd once per key: a repeat of the same command answers the first
// result (Replayed), another command under the same key is refused. A refusal for
// want of brokers is not remembered: it changed nothing, and a retry may succeed.
func (s *State) keyed(c *Keyed) (Result, Changes) {
	switch {
	case c.Key == "" || len(c.Key) > MaxKeyLen:
		return fail(errf(CodeInvalid, "Idempotency-Key must have 1 to %d characters", MaxKeyLen))
	case len(c.Cmd) > 0 && CmdType(c.Cmd[0]) == TypeKeyed:
		return fail(errf(CodeInvalid, "a keyed command cannot hold another"))
	}
	sum := sha256.Sum256(c.Cmd)
	ch := Changes{Keys: s.expireKeys(c.At)}
	if e, ok := s.Keys[c.Key]; ok {
		if e.Sum != hex.EncodeToString(sum[:]) {
			return Result{Err: errf(CodeKeyReused, "Idempotency-Key %q was used for another request", c.Key)}, ch
		}
		res := e.Result
		res.Replayed = true
		return res, ch
	}
	res, inner := s.Apply(c.Cmd)
	inner.Keys = ch.Keys
	if res.Err != nil && res.Err.Code == CodeUnavailable {
		return res, inner
	}
	if len(s.Keys) >= MaxKeys {
		inner.Keys = append(inner.Keys, s.dropOldestKey())
	}
	s.Keys[c.Key] = KeyEntry{At: c.At, Sum: hex.EncodeToString(sum[:]), Result: res}
	inner.Keys = append(inner.Keys, c.Key)
	return res, inner
}

// expireKeys drops the keys older than KeyRetention before the latest time seen
// (now, or a key's own time when a manager's clock stood further ahead) and returns
// them.
func (s *State) expireKeys(now int64) []string {
	for _, e := range s.Keys {
		now = max(now, e.At)
	}
	var gone []string
	for k, e := range s.Keys {
		if e.At < now-KeyRetention.Milliseconds() {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone) // the order the store deletes them in: the same on every manager
	for _, k := range gone {
		delete(s.Keys, k)
	}
	return gone
}

// dropOldestKey removes the key with the least time (ties: the least key).
func (s *State) dropOldestKey() string {
	var oldest string
	var at int64
	for k, e := range s.Keys {
		if oldest == "" || e.At < at || e.At == at && k < oldest {
			oldest, at = k, e.At
		}
	}
	delete(s.Keys, oldest)
	return oldest
}
