package broker

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"syscall"
	"time"
)

// peerWatch is the pinging half of Broker.watchPeers: which brokers to ping, whose
// pings are still out, and which did not answer their last one. It sends nothing
// itself: due hands out the pings to send and pinged takes their answers, so the
// watcher's goroutine and the pings' goroutines share only what mu guards.
type peerWatch struct {
	log  *slog.Logger
	list func() []string // the raft addresses of the other brokers

	// Only the watcher's goroutine (the one calling due).
	peers            []string
	listed, lastPing time.Time

	mu       sync.Mutex
	down     map[string]suspicion // addresses whose last ping failed
	inFlight map[string]bool      // addresses whose ping has not returned
}

// suspicion is what the watcher knows of a peer whose last ping failed.
type suspicion struct {
	since time.Time // the first failed ping of this episode returned
	// gone: the last ping was refused: nothing listens on the peer's raft address, so
	// its process (and every raft group it ran) is gone, not just slow.
	gone bool
}

func newPeerWatch(log *slog.Logger, list func() []string) *peerWatch {
	return &peerWatch{log: log, list: list, down: map[string]suspicion{}, inFlight: map[string]bool{}}
}

// due returns the peers to ping at now: every peer whose last ping has returned, once
// per pingEvery. The peers are listed again every peersEvery.
func (w *peerWatch) due(now time.Time) []string {
	if now.Sub(w.listed) >= peersEvery {
		w.listed = now
		w.peers = w.list()
	}
	if now.Sub(w.lastPing) < pingEvery {
		return nil
	}
	w.lastPing = now
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, addr := range w.peers {
		if !w.inFlight[addr] {
			w.inFlight[addr] = true
			out = append(out, addr)
		}
	}
	return out
}

// pinged records the answer to a ping of addr that due handed out. A ping that
// failed because ctx (the watcher's) ended says nothing of the peer.
func (w *peerWatch) pinged(ctx context.Context, addr string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.inFlight, addr)
	s, down := w.down[addr]
	switch {
	case err != nil && ctx.Err() == nil:
		if !down {
			w.log.Info("broker not answering pings; hastening elections of the partitions it leads", "raft", addr, "error", err)
			s.since = time.Now()
		}
		s.gone = errors.Is(err, syscall.ECONNREFUSED)
		w.down[addr] = s
	case err == nil && down:
		w.log.Info("broker answers pings again", "raft", addr)
		delete(w.down, addr)
	}
}

// suspects returns a copy of the addresses whose last ping failed.
func (w *peerWatch) suspects() map[string]suspicion {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.down)
}
