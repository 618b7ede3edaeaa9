// Package store keeps all of a broker's partitions on disk in ONE bbolt file.
//
// Why one file: a broker holds hundreds of partitions, each its own Raft group. With a
// file per partition every append pays its own fsync (about 3,300/s on this disk for
// the whole machine) and opening 1,000 files took 11–13 s at startup. Here every write
// of every partition (Raft log appends, term/vote updates, applied messages) goes
// through one committer goroutine that runs whatever is queued as ONE bolt
// transaction: one fsync for all the partitions that wrote meanwhile, with no added
// delay when only one writer is active (unlike bolt's DB.Batch, which waits 10 ms).
//
// Layout: one top-level bucket per partition group ("p/orders/3") holding
//
//	log    raft log entries by index (raft.LogStore)
//	stable raft term/vote (raft.StableStore)
//	msg    message bodies by offset
//	cons   consumer offsets, prod: producers' last batch, meta: applied index etc.
//	snap   raft snapshots, which hold only the small state (see snapshot.go)
//
// and a "replicas" bucket naming the groups the broker holds. The applied Raft index
// is committed in the same transaction as the messages it produced, so a restart
// skips exactly the entries already applied. Message bodies are written twice (log
// entry, then msg bucket) but the log is truncated after each cheap snapshot, so it
// stays small; memory does not grow with bytes stored (bolt pages are file-backed).
package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrClosed is returned for writes after Close.
	ErrClosed = errors.New("store: closed")
	// ErrNoGroup is returned when a group's buckets are gone (the replica was deleted).
	ErrNoGroup = errors.New("store: no such group")

	bucketReplicas = []byte("replicas")
)

// DB is the broker's single bolt file plus its group-commit writer.
type DB struct {
	bolt *bolt.DB
	reqs chan *writeReq

	mu        sync.RWMutex // held (shared) while queueing, so Close knows no write is on its way
	closed    bool
	closeOnce sync.Once
	closing   chan struct{}
	stopped   chan struct{}

	txs, writes atomic.Uint64
}

type writeReq struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxBatch bounds one transaction so that a flood of writers still gets fsyncs often.
const maxBatch = 1024

// Open opens (or creates) the bolt file at path.
func Open(path string) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second, // another broker holding the file is an error, not a hang
		NoFreelistSync: true,            // the freelist is rebuilt at open instead of written per commit
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketReplicas)
		return err
	}); err != nil {
		b.Close()
		return nil, err
	}
	d := &DB{bolt: b, reqs: make(chan *writeReq, maxBatch), closing: make(chan struct{}), stopped: make(chan struct{})}
	go d.commitLoop()
	return d, nil
}

// Close commits the writes already queued, then closes the file.
func (d *DB) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		close(d.closing)
	})
	<-d.stopped
	return d.bolt.Close()
}

// Stats returns the number of bolt transactions committed and of writes they carried:
// writes/txs is how many writers shared each fsync.
func (d *DB) Stats() (txs, writes uint64) { return d.txs.Load(), d.writes.Load() }

// update runs fn in a write transaction shared with whatever other writes are
// queued. fn may run twice (alone, if another write in its batch failed), so it must
// only touch tx.
func (d *DB) update(fn func(*bolt.Tx) error) error {
	return <-d.updateAsync(fn)
}

// updateAsync queues fn and returns at once; the channel gets the outcome. Writes are
// committed in the order they were queued.
func (d *DB) updateAsync(fn func(*bolt.Tx) error) <-chan error {
	r := &writeReq{fn: fn, err: make(chan error, 1)}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		r.err <- ErrClosed
	} else {
		d.reqs <- r
	}
	return r.err
}

func (d *DB) view(fn func(*bolt.Tx) error) error { return d.bolt.View(fn) }

func (d *DB) commitLoop() {
	defer close(d.stopped)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-d.reqs:
			batch = append(batch, r)
		case <-d.closing:
			d.drain(batch)
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-d.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		d.commit(batch)
	}
}

// drain commits what is still queued at Close (nothing can be added any more).
func (d *DB) drain(batch []*writeReq) {
	for {
		select {
		case r := <-d.reqs:
			batch = append(batch, r)
			if len(batch) < maxBatch {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			return
		}
		d.commit(batch)
		batch = batch[:0]
	}
}

func (d *DB) commit(batch []*writeReq) {
	d.txs.Add(1)
	d.writes.Add(uint64(len(batch)))
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.err <- err
		}
		return
	}
	// One write failed and took the others down with it: redo each alone so only the
	// failing one reports an error.
	for _, r := range batch {
		d.txs.Add(1)
		r.err <- d.bolt.Update(r.fn)
	}
}

// Group returns the stores of one Raft group, creating its buckets if needed.
func (d *DB) Group(name string) (*Group, error) {
	g := &Group{db: d, name: []byte(name)}
	err := d.update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(g.name)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bLog, bStable, bMsg, bCons, bProd, bMeta, bSnap} {
			if _, err := root.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: group %s: %w", name, err)
	}
	return g, nil
}

// SetReplica records that the broker holds group, with an opaque description (the
// broker keeps the peers there), so that a restart reopens it.
func (d *DB) SetReplica(group string, desc []byte) error {
	return d.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReplicas).Put([]byte(group), desc)
	})
}

// Replicas returns every recorded group with its description.
func (d *DB) Replicas() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := d.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReplicas).ForEach(func(k, v []byte) error {
			out[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	return out, err
}

// DeleteGroup removes a group's data and its replica record in one transaction.
func (d *DB) DeleteGroup(group string) error {
	return d.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketReplicas).Delete([]byte(group)); err != nil {
			return err
		}
		if err := tx.DeleteBucket([]byte(group)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		return nil
	})
}

// Group is one Raft group's slice of the file.
type Group struct {
	db   *DB
	name []byte
}

var (
	bLog    = []byte("log")
	bStable = []byte("stable")
	bMsg    = []byte("msg")
	bCons   = []byte("cons")
	bProd   = []byte("prod")
	bMeta   = []byte("meta")
	bSnap   = []byte("snap")
)

// bucket returns a sub-bucket of the group, or ErrNoGroup once the group is deleted.
func (g *Group) bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	root := tx.Bucket(g.name)
	if root == nil {
		return nil, ErrNoGroup
	}
	return root.Bucket(name), nil
}

func (g *Group) update(name []byte, fn func(*bolt.Bucket) error) error {
	return g.db.update(func(tx *bolt.Tx) error {
		b, err := g.bucket(tx, name)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

func (g *Group) view(name []byte, fn func(*bolt.Bucket) error) error {
	return g.db.view(func(tx *bolt.Tx) error {
		b, err := g.bucket(tx, name)
		if err != nil {
			return err
		}
		return fn(b)
	})
}
