package broker

import (
	"io"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/internal/store"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/httpjson"
)

// Repair of damaged message bodies (broker/internal/store faults.go): every replica of a
// partition holds the same bytes at the same offsets, so a damaged body is read again
// by offset from another replica (GET /replicas/{topic}/{partition}/messages, which
// checks its own crcs before it answers; base64, so that bodies that are not UTF-8
// come back byte for byte), checked against this replica's crc and
// written back in place. Until then the damage is logged, counted, and named in
// /healthz (the output of the broker's Consul check), and the message is never served.

//
// When no other replica can give a damaged range back (each one answered that it
// deleted those messages, or holds them damaged too) for unrepairableAfter, the replica
// is rebuilt from a healthy leader (rebuildRunning); while there is none, the range
// stays unavailable (503, code damaged) and /healthz says why.

// repairEvery is how often unrepaired damage is tried again (no peer answered, or
// the replica was not open yet).
const repairEvery = 2 * time.Second

// unrepairableAfter is how long no other replica may be able to give a damaged range
// back before the replica is rebuilt instead. Not at once: a replica behind the
// group's retention holds messages its peers deleted, and the Truncate it has yet to
// apply soon deletes them here too, at far less cost than a rebuild.
const unrepairableAfter = 10 * time.Second

// faults is the damage found and not yet repaired, by group.
type faults struct {
	mu      sync.Mutex
	pending map[string][]store.Fault
	why     map[string]string    // why the last repair of the group failed
	stuck   map[string]time.Time // since when no other replica can give its damage back
	kick    chan struct{}
}

func newFaults() *faults {
	return &faults{pending: map[string][]store.Fault{}, why: map[string]string{}, stuck: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// failed records why the repair of group failed; unrepairable says that no other
// replica can give the damage back. It returns for how long that has been so.
func (fs *faults) failed(group string, err error, unrepairable bool) time.Duration {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.why[group] = err.Error()
	if !unrepairable {
		delete(fs.stuck, group)
		return 0
	}
	since, ok := fs.stuck[group]
	if !ok {
		since = time.Now()
		fs.stuck[group] = since
	}
	return time.Since(since)
}

// reason says why the damage of group is not repaired yet ("" if unknown).
func (fs *faults) reason(group string) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.why[group]
}

// add records f (merged with what is pending) and wakes the repairer; it reports
// whether f was new.
func (fs *faults) add(f store.Fault) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, o := range fs.pending[f.Group] {
		if o.Index != f.Index { // repaired differently
			continue
		}
		if o.From <= f.From && f.To <= o.To {
			return false
		}
		if f.From <= o.To && o.From <= f.To {
			fs.pending[f.Group][i].From, fs.pending[f.Group][i].To = min(o.From, f.From), max(o.To, f.To)
			return true
		}
	}
	fs.pending[f.Group] = append(fs.pending[f.Group], f)
	select {
	case fs.kick <- struct{}{}:
	default:
	}
	return true
}

// done removes [from, to) of group from what is pending.
func (fs *faults) done(group string, from, to uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var keep []store.Fault
	for _, f := range fs.pending[group] {
		if f.From >= from && f.To <= to {
			continue
		}
		if f.From >= from && f.From < to {
			f.From = to
		}
		keep = append(keep, f)
	}
	if len(keep) == 0 {
		delete(fs.pending, group)
		delete(fs.why, group)
		delete(fs.stuck, group)
	} else {
		fs.pending[group] = keep
	}
}

func (fs *faults) list() []store.Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []store.Fault
	for _, l := range fs.pending {
		out = append(out, l...)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Group < out[j].Group || out[i].Group == out[j].Group && out[i].From < out[j].From
	})
	return out
}

// faultFound is the store's OnFault.
func (b *Broker) faultFound(f store.Fault) {
	if !b.faults.add(f) {
		return
	}
	if f.Index {
		election.StorageFaults.WithLabelValues(election.FaultIndexChecksum).Inc()
		b.log.Error("storage fault: damaged message index entries in data.db, their messages not served until fetched again from another replica", "fault", f.String())
		return
	}
	election.StorageFaults.WithLabelValues(election.FaultDataChecksum).Inc()
	b.log.Error("storage fault: damaged message bodies, not served until repaired from another replica", "fault", f.String())
}

// walDamage is the WAL's OnDamage: a Raft log record of group that no longer checks out.
func (b *Broker) walDamage(group string, err error) {
	b.log.Error("storage fault: damaged raft log record, not used", "group", group, "error", err)
	b.mu.RLock()
	r := b.replicas[group]
	b.mu.RUnlock()
	if r != nil {
		r.node.ReportDamage(election.FaultWALChecksum, err) // counts it too
	} else {
		election.StorageFaults.WithLabelValues(election.FaultWALChecksum).Inc()
	}
}

// repairLoop repairs what faults holds until ctx is done.
func (b *Broker) repairLoop(ctx context.Context) {
	t := time.NewTicker(repairEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.faults.kick:
		case <-t.C:
		}
		for _, f := range b.faults.list() {
			if err := b.repair(ctx, f); err != nil && ctx.Err() == nil {
				b.log.Warn("storage fault not repaired yet", "fault", f.String(), "error", err)
			}
		}
	}
}

// repair fetches the bodies of f from the other replicas, a read's worth at a time.
func (b *Broker) repair(ctx context.Context, f store.Fault) error {
	b.mu.RLock()
	r, reopening := b.replicas[f.Group], b.pending > 0
	b.mu.RUnlock()
	if r == nil && !reopening {
		b.faults.done(f.Group, f.From, f.To) // the replica was deleted
		return nil
	}
	if r == nil {
		return errors.New("the replica is not open yet")
	}
	from := f.From
	if start, _ := r.fsm.Bounds(); from < start { // retention deleted them since
		b.faults.done(f.Group, from, start)
		from = start
	}
	for from < f.To {
		msgs, err := b.fetch(ctx, r, from, min(f.To-from, brokerapi.MaxReadAt))
		var none *noPeerHas
		if err != nil && b.faults.failed(f.Group, err, errors.As(err, &none)) >= unrepairableAfter {
			if rerr := b.rebuildRunning(ctx, r, fmt.Errorf("%s: %w", f, err)); rerr != nil {
				b.faults.failed(f.Group, rerr, true)
				return rerr
			}
			return nil
		}
		if err != nil {
			return err
		}
		taken, n := len(msgs), 0
		if f.Index {
			taken, err = r.store.RepairIndex(from, msgs)
			n = taken
		} else {
			n, err = r.store.Repair(from, msgs)
		}
		if err != nil {
			return err
		}
		if taken == 0 { // repaired meanwhile
			b.faults.done(f.Group, from, f.To)
			return nil
		}
		b.faults.done(f.Group, from, from+uint64(taken))
		b.log.Warn("storage fault repaired from another replica", "group", f.Group, "from", from, "messages", taken, "rewritten", n, "index", f.Index)
		from += uint64(taken)
	}
	return nil
}

// noPeerHas is a fetch that every other replica answered for good: it deleted the
// messages (retention) or holds them damaged too.
type noPeerHas struct{ err error }

func (e *noPeerHas) Error() string {
	return fmt.Sprintf("no other replica can give these messages back (%v)", e.err)
}

// fetch reads up to n messages from offset from on any other replica that has them.
func (b *Broker) fetch(ctx context.Context, r *replica, from, n uint64) ([][]byte, error) {
	var errs []error
	gone := 0
	for _, p := range r.desc().Peers {
		if p.ID == b.cfg.ID || p.HTTPAddr == "" {
			continue
		}
		msgs, err := b.readAtPeer(ctx, p.HTTPAddr, r.topic, r.part, from, n)
		if err == nil && len(msgs) > 0 {
			return msgs, nil
		}
		if err == nil {
			err = fmt.Errorf("broker %s has not got message %d yet", p.ID, from)
		}
		var pe *peerError
		if errors.As(err, &pe) && (pe.status == http.StatusGone || pe.code == brokerapi.CodeDamaged) {
			gone++
		}
		errs = append(errs, err)
	}
	switch {
	case len(errs) == 0:
		return nil, errors.New("no other replica's HTTP address is known")
	case gone == len(errs):
		return nil, &noPeerHas{errors.Join(errs...)}
	}
	return nil, errors.Join(errs...)
}

// notRepairedYet leads the reason a damaged read or /healthz gives.
const notRepairedYet = "; not repaired yet: "

// peerError is another broker's failure answer.
type peerError struct {
	addr   string
	status int
	code   string // brokerapi.Failure.Code
	msg    string
}

func (e *peerError) Error() string { return fmt.Sprintf("%s: %d: %s", e.addr, e.status, e.msg) }

func (b *Broker) readAtPeer(ctx context.Context, addr, topic string, part int, from, n uint64) ([][]byte, error) {
	var reply brokerapi.ReadAtRawReply
	err := b.peerGet(ctx, addr, fmt.Sprintf("/replicas/%s/%d/messages?offset=%d&max=%d&encoding=base64", url.PathEscape(topic), part, from, n), &reply)
	return reply.Messages, err
}

// peerGet GETs path from another broker's API (mTLS with the broker certificate) into out.
func (b *Broker) peerGet(ctx context.Context, addr, path string, out any) error {
	b.peerOnce.Do(func() {
		b.peerHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: b.cfg.Security.BrokerClient()}}
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", b.cfg.Security.Scheme(), addr, path), nil)
	if err != nil {
		return err
	}
	resp, err := b.peerHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var f brokerapi.Failure
		body, _ := io.ReadAll(resp.Body)
		httpjson.DecodeFailure(resp.StatusCode, body, &f)
		// A damaged peer explains why it is not repaired yet with what its own peers
		// answered, which includes this broker's explanation: kept whole, the
		// messages would nest each other and grow with every repair attempt.
		msg, _, _ := strings.Cut(f.Message, notRepairedYet)
		return &peerError{addr: addr, status: resp.StatusCode, code: f.Code, msg: msg}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	return nil
}

// haltedNotes describes the halted replicas, for /healthz.
func (b *Broker) haltedNotes() []string {
	var out []string
	for _, r := range b.allReplicas() {
		if ok, why := r.node.Halted(); ok {
			out = append(out, r.group+": "+why)
		}
	}
	return out
}

// faultNotes describes the unrepaired damage, for /healthz.
func (b *Broker) faultNotes() []string {
	var out []string
	for _, f := range b.faults.list() {
		note := "unrepaired storage fault: " + f.String()
		if why := b.faults.reason(f.Group); why != "" {
			note += notRepairedYet + why
		}
		out = append(out, note)
	}
	for _, r := range b.allReplicas() {
		if ok, why := r.node.Recovering(); ok {
			out = append(out, r.group+": "+why)
		}
	}
	return out
}

// explain adds to a read that met damage why it is not repaired yet, if known.
func (b *Broker) explain(group string, err error) error {
	if store.IsDamage(err) {
		if why := b.faults.reason(group); why != "" {
			return fmt.Errorf("%w%s%s", err, notRepairedYet, why)
		}
	}
	return err
}
