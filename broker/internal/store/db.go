// Package store keeps all of a broker's partitions on disk in four shared places,
// whatever the number of partitions: the write-ahead log of broker/internal/wal (every
// partition's Raft log entries), raft.db (term/vote and snapshots), data.db (offsets,
// and where each message is), both bbolt files, and the data log (message bodies).
//
// Why shared files: a broker holds hundreds of partitions, each its own Raft group.
// With a file per partition every append pays its own fsync (about 3,300/s on this
// disk for the whole machine) and opening 1,000 bolt files took 11–13 s at startup.
// Here each file has one committer goroutine that runs whatever writes are queued, from
// any partition, as ONE bolt transaction: one commit (bolt fsyncs twice per commit)
// for all the partitions that wrote meanwhile, with no added delay when only one writer
// is active (unlike bolt's DB.Batch, which waits 10 ms).
//
// Why apart: the Raft log append is on the path of every acknowledgement, twice (leader,
// then follower); the message store is not (the FSM commits to it asynchronously, see
// broker/partition). Together, a log append would queue behind the previous entry's
// message commit; apart they proceed in parallel, and the log gets the cheaper format
// (one sync per append instead of bolt's two, see broker/internal/wal).
//
// Layout: in each file one top-level bucket per partition group ("p/orders/3"):
//
//	wal/     raft log entries (raft.LogStore), see broker/internal/wal
//	raft.db  stable raft term/vote (raft.StableStore)
//	         snap   raft snapshots: only the small partition state (see snapshot.go)
//	data/    message bodies, appended to segments shared by all partitions (datalog.go)
//	data.db  idx    where each run of messages is in data/ (runs.go)
//	         cons   consumer offsets; prod: producers' last batch; meta: applied index
//
// and in raft.db a "replicas" bucket naming the groups the broker holds. The applied
// Raft index is committed in the same transaction as the messages it produced, so a
// restart skips exactly the entries already applied. Message bodies are written twice
// (log entry, then data/), but the log is truncated after each cheap snapshot, so it
// stays small, and its segment files are reused: of the two, only the data log's
// writes go to new pages. Memory does not grow with bytes stored.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/internal/wal"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/groupcommit"
	bolt "go.etcd.io/bbolt"
)

var (
	// ErrClosed is returned for writes after Close.
	ErrClosed = errors.New("store: closed")
	// ErrNoGroup is returned when a group's buckets are gone (the replica was deleted).
	ErrNoGroup = errors.New("store: no such group")

	bucketReplicas = []byte("replicas")
)

// DB is the broker's log and two bolt files.
type DB struct {
	wal       *wal.WAL
	log, data *file // raft.db and data.db (data.dlog is the data log)

	onFault    func(Fault)
	openFaults []Fault // found at open, reported once OnFault is set
}

// file is one bolt file plus its group-commit writer.
type file struct {
	delay time.Duration // between commits (see dataCommitDelay, logCommitPause)
	kicks chan struct{} // commit now
	soon  chan struct{} // commit within soonDelay
	dlog  *dataLog      // data.db's: written and synced before each commit

	bolt   *bolt.DB
	writer *groupcommit.Loop[*writeReq]
}

type writeReq struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxBatch bounds one transaction so that a flood of writers still gets fsyncs often.
const maxBatch = 1024

// Open opens (or creates) the broker's files in dir.
func Open(dir string) (*DB, error) {
	log, err := openFile(filepath.Join(dir, "raft.db"), logCommitPause, 0)
	if err != nil {
		return nil, err
	}
	data, err := openFile(filepath.Join(dir, "data.db"), dataCommitDelay, dataPageSize)
	if err != nil {
		log.close()
		return nil, err
	}
	dlog, err := openDataLog(filepath.Join(dir, "data"), data.bolt)
	if err != nil {
		log.close()
		data.close()
		return nil, err
	}
	data.dlog = dlog
	w, err := wal.Open(filepath.Join(dir, "wal"))
	if err != nil {
		log.close()
		data.close()
		dlog.close()
		return nil, err
	}
	d := &DB{wal: w, log: log, data: data}
	if err := d.log.update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketReplicas)
		return err
	}); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.data.view(refuseFirstFormat); err != nil {
		d.Close()
		return nil, err
	}
	var unsealed map[string][][]byte
	if d.openFaults, unsealed, err = d.scanIndex(); err == nil {
		err = d.sealOld(unsealed)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// bMsg held a partition's message bodies by offset in the first format of data.db.
var bMsg = []byte("msg")

// refuseFirstFormat fails if a partition of data.db still keeps its messages in the
// first format, which no release wrote and this version does not read.
func refuseFirstFormat(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, root *bolt.Bucket) error {
		if root.Bucket(bMsg) != nil {
			return fmt.Errorf("store: partition %s in %s keeps its messages in the first format of data.db, from a development build before any release, which this version does not read: move the broker's data directory aside and start it again (its replicas catch up from their peers)", name, tx.DB().Path())
		}
		return nil
	})
}

// WAL returns the broker's write-ahead log.
func (d *DB) WAL() *wal.WAL { return d.wal }

// Close commits the writes already queued, then closes the files.
func (d *DB) Close() error {
	return errors.Join(d.wal.Close(), d.log.close(), d.data.close(), d.data.dlog.close())
}

func openFile(path string, delay time.Duration, pageSize int) (*file, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second, // another broker holding the file is an error, not a hang
		NoFreelistSync: true,            // the freelist is rebuilt at open instead of written per commit
		FreelistType:   bolt.FreelistMapType,
		PageSize:       pageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	f := &file{bolt: b, delay: delay, writer: groupcommit.New[*writeReq](maxBatch), kicks: make(chan struct{}, 1), soon: make(chan struct{}, 1)}
	f.writer.Start(f.commit, f.pause)
	return f, nil
}

// dataCommitDelay spaces the commits of data.db. They are off the acknowledgement path
// (the Raft log already holds the entries), so waiting lets one commit carry many
// partitions' batches and leaves the disk's syncs to the log; a reader that needs the
// data now (consume, a snapshot) kicks the committer instead of waiting. With 64 busy
// partitions a commit rewrites a B+tree path per partition: 10 ms apart, those commits
// took 30 % of the broker's CPU.
const dataCommitDelay = 100 * time.Millisecond

// logCommitPause spaces the commits of raft.db: its writes (replica records, each
// group's term and vote, snapshot metadata) come from thousands of groups one at a
// time, so without a pause nearly every write was a commit of its own, two fsyncs each.
// Creating topics on five brokers, each broker committed raft.db 165 times a second
// (four commits per new replica); 10 ms apart, 49 times. The pause delays a write only
// when another commit ended less than 10 ms before it, which no election or create
// notices.
const logCommitPause = 10 * time.Millisecond

// soonDelay is how long a write that asked for a commit soon (kickSoon) waits for
// others to share it.
const soonDelay = 10 * time.Millisecond

// dataPageSize is data.db's bolt page size (a file keeps the size it was created
// with). Bolt writes a commit page by page, one pwrite each, and 4 KiB pages hold only
// three 1 KiB messages. Measured, one commit of 4 partitions × 750 messages of 1 KiB:
// 4 KiB pages 2.8 µs of CPU per message, 16 KiB 1.6 µs, 64 KiB 1.2 µs; but 64
// partitions × 3 messages: 4 KiB 19–27 µs, 16 KiB 18–22 µs, 64 KiB 36 µs (a commit
// rewrites each partition's last leaf and branch pages, 11× the bytes of 4 KiB pages).
const dataPageSize = 16 << 10

// kick makes a delayed committer commit what is queued now.
func (d *file) kick() {
	select {
	case d.kicks <- struct{}{}:
	default:
	}
}

func (d *file) close() error {
	d.writer.Close()
	return d.bolt.Close()
}

// update runs fn in a write transaction shared with whatever other writes are
// queued. fn may run twice (alone, if another write in its batch failed), so it must
// only touch tx.
func (d *file) update(fn func(*bolt.Tx) error) error {
	return <-d.updateAsync(fn)
}

// updateAsync queues fn and returns at once; the channel gets the outcome. Writes are
// committed in the order they were queued.
func (d *file) updateAsync(fn func(*bolt.Tx) error) <-chan error {
	r := &writeReq{fn: fn, err: make(chan error, 1)}
	if !d.writer.Queue(r) {
		r.err <- ErrClosed
	}
	return r.err
}

func (d *file) view(fn func(*bolt.Tx) error) error {
	if d.dlog != nil {
		d.dlog.reading.RLock()
		defer d.dlog.reading.RUnlock()
	}
	return d.bolt.View(fn)
}

// kickSoon makes a delayed committer commit what is queued within soonDelay: for a
// write that is waited for but comes in bursts (opening replicas), so that one commit
// serves the burst.
func (d *file) kickSoon() {
	select {
	case d.soon <- struct{}{}:
	default:
	}
}

// pause spaces a delayed file's commits (see dataCommitDelay) until a reader kicks.
func (d *file) pause(closing <-chan struct{}) {
	if d.delay == 0 {
		return
	}
	until := time.Now().Add(d.delay)
	t := time.NewTimer(d.delay)
	defer t.Stop()
	soon := d.soon
	for {
		select {
		case <-t.C:
			return
		case <-d.kicks:
			return
		case <-closing:
			return
		case <-soon:
			soon = nil
			if time.Until(until) > soonDelay {
				t.Reset(soonDelay)
			}
		}
	}
}

func (d *file) commit(batch []*writeReq) {
	err := d.run(batch)
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.err <- err
		}
		return
	}
	// One write failed and took the others down with it: redo each alone so only the
	// failing one reports an error.
	for _, r := range batch {
		r.err <- d.run([]*writeReq{r})
	}
}

// run commits reqs in one transaction, after the data log has their message bodies.
func (d *file) run(reqs []*writeReq) error {
	if d.dlog != nil {
		d.dlog.begin()
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		for _, r := range reqs {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		if d.dlog != nil {
			return d.dlog.finish(tx)
		}
		return nil
	})
	if err == nil && d.dlog != nil {
		d.dlog.committed()
	}
	return err
}

// Group returns the stores of one Raft group, creating its buckets if needed.
func (d *DB) Group(name string) (*Group, error) {
	l, err := d.wal.Log(name)
	if err != nil {
		return nil, err
	}
	g := &Group{db: d, name: []byte(name), log: l, dropped: make(chan struct{})}
	// Both files at once, and data.db's committer woken from its delay (soon, so that
	// the replicas a create opens at once share a commit): opening a replica is on the
	// path of creating a topic. A file that has the buckets (a
	// restart, or after AddReplica) is not written: a commit is two fsyncs.
	var waits []<-chan error
	for _, w := range []struct {
		f    *file
		subs [][]byte
	}{{d.log, groupLogBuckets}, {d.data, groupDataBuckets}} {
		if has, err := w.f.hasBuckets(g.name, w.subs); err != nil || !has {
			waits = append(waits, w.f.updateAsync(func(tx *bolt.Tx) error { return createBuckets(tx, g.name, w.subs) }))
			if w.f == d.data {
				d.data.kickSoon()
			}
		}
	}
	for _, c := range waits {
		err = errors.Join(err, <-c)
	}
	if err != nil {
		return nil, fmt.Errorf("store: group %s: %w", name, err)
	}
	return g, nil
}

// AddReplica is SetReplica for a group new to this broker: the same commit creates the
// group's buckets in raft.db, and a commit of data.db at the same time creates its
// buckets there, which Group would otherwise create one after the other, each in a
// commit of its own on the path of a create. Empty buckets left in data.db by a crash
// before the record is committed hold nothing and are reused if the group comes.
//
// With boot (election.FreshBootstrap) and no state of the group here yet, the raft
// state a new group starts from goes along: the term 1 in that raft.db commit, and boot
// as entry 1 of its log in the write-ahead log at the same time, so that opening the
// node finds it instead of writing it in commits of its own. A crash that keeps only
// some of the three leaves what a crash inside raft's own bootstrap leaves: a member
// that catches up from the others (or, without the record, a replica the managers
// open again, which then starts on what is there).
func (d *DB) AddReplica(group string, desc []byte, boot *raft.Log) error {
	name := []byte(group)
	data := d.data.updateAsync(func(tx *bolt.Tx) error { return createBuckets(tx, name, groupDataBuckets) })
	d.data.kickSoon()
	var logged chan error
	if boot != nil {
		l, err := d.freshLog(group)
		if err != nil {
			return errors.Join(err, <-data)
		}
		if l == nil {
			boot = nil
		} else {
			logged = make(chan error, 1)
			go func() { logged <- l.StoreLog(boot) }()
		}
	}
	err := d.log.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketReplicas).Put(name, desc); err != nil {
			return err
		}
		if err := createBuckets(tx, name, groupLogBuckets); err != nil {
			return err
		}
		if boot == nil {
			return nil
		}
		return tx.Bucket(name).Bucket(bStable).Put(election.KeyCurrentTerm, u64key(1))
	})
	err = errors.Join(err, <-data)
	if logged != nil {
		err = errors.Join(err, <-logged)
	}
	return err
}

// freshLog returns the group's log if this broker holds no raft state of the group (no
// buckets in raft.db for its term, vote and snapshots, nothing in the write-ahead log),
// and nil if it holds some.
func (d *DB) freshLog(group string) (*wal.Log, error) {
	l, err := d.wal.Log(group)
	if err != nil {
		return nil, err
	}
	if last, err := l.LastIndex(); err != nil || last != 0 {
		return nil, err
	}
	fresh := false
	err = d.log.bolt.View(func(tx *bolt.Tx) error {
		fresh = tx.Bucket([]byte(group)) == nil
		return nil
	})
	if err != nil || !fresh {
		return nil, err
	}
	return l, nil
}

// The buckets of a group under its name in raft.db and in data.db.
var (
	groupLogBuckets  = [][]byte{bStable, bSnap}
	groupDataBuckets = [][]byte{bIdx, bCons, bProd, bMeta, bTime}
)

func createBuckets(tx *bolt.Tx, name []byte, subs [][]byte) error {
	root, err := tx.CreateBucketIfNotExists(name)
	if err != nil {
		return err
	}
	for _, b := range subs {
		if _, err := root.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// hasBuckets reports whether the file holds every one of subs under name.
func (d *file) hasBuckets(name []byte, subs [][]byte) (bool, error) {
	has := true
	err := d.bolt.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(name)
		for _, b := range subs {
			has = has && root != nil && root.Bucket(b) != nil
		}
		return nil
	})
	return has, err
}

// SetReplica records that the broker holds group, with an opaque description (the
// broker keeps the peers there), so that a restart reopens it.
func (d *DB) SetReplica(group string, desc []byte) error {
	return d.log.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReplicas).Put([]byte(group), desc)
	})
}

// deleting marks a replica record whose deletion has started.
var deleting = []byte{0}

// Replicas returns every recorded group with its description, after finishing any
// deletion a crash interrupted.
func (d *DB) Replicas() (map[string][]byte, error) {
	out := map[string][]byte{}
	var unfinished []string
	err := d.log.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReplicas).ForEach(func(k, v []byte) error {
			if bytes.Equal(v, deleting) {
				unfinished = append(unfinished, string(k))
			} else {
				out[string(k)] = append([]byte(nil), v...)
			}
			return nil
		})
	})
	for _, g := range unfinished {
		err = errors.Join(err, d.DeleteGroup(g))
	}
	return out, err
}

// DeleteGroup removes a group's data and its replica record. The record is marked
// first and removed last, so that a crash in between neither reopens a replica
// without its messages nor leaves stale messages for a later replica of the same name.
func (d *DB) DeleteGroup(group string) error { return d.dropGroup(group, nil) }

// ResetGroup removes a group's data and then records it again with desc, so that the
// replica opens empty (a rebuild). A crash in between finishes as a deletion at the
// next start: the replica is then gone from this broker, never half there.
func (d *DB) ResetGroup(group string, desc []byte) error { return d.dropGroup(group, desc) }

// dropGroup removes group's data, and its replica record unless keep, which it records
// instead.
func (d *DB) dropGroup(group string, keep []byte) error {
	name := []byte(group)
	drop := func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		return nil
	}
	dropData := func(tx *bolt.Tx) error {
		if root := tx.Bucket(name); root != nil {
			d.data.dlog.release(runsBySegment(root))
		}
		return drop(tx)
	}
	steps := []func() error{
		func() error {
			return d.log.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketReplicas).Put(name, deleting) })
		},
		func() error { return d.data.update(dropData) },
		func() error { return d.wal.Drop(group) },
		func() error {
			return d.log.update(func(tx *bolt.Tx) error {
				if err := drop(tx); err != nil {
					return err
				}
				if keep != nil {
					return tx.Bucket(bucketReplicas).Put(name, keep)
				}
				return tx.Bucket(bucketReplicas).Delete(name)
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// Group is one Raft group's part of the files.
type Group struct {
	db   *DB
	name []byte
	log  *wal.Log

	dropped  chan struct{} // closed by Partition.Drop
	dropOnce sync.Once
}

var (
	bStable = []byte("stable")
	bSnap   = []byte("snap")
	bCons   = []byte("cons")
	bProd   = []byte("prod")
	bMeta   = []byte("meta")
)

// fileOf says which file holds a sub-bucket.
func (g *Group) fileOf(name []byte) *file {
	for _, b := range [][]byte{bIdx, bCons, bProd, bMeta, bTime} {
		if bytes.Equal(name, b) {
			return g.db.data
		}
	}
	return g.db.log
}

// bucket returns a sub-bucket of the group, or ErrNoGroup once the group is deleted.
func (g *Group) bucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	root, err := g.root(tx)
	if err != nil {
		return nil, err
	}
	return root.Bucket(name), nil
}

// root returns the group's bucket, or ErrNoGroup once the group is deleted.
func (g *Group) root(tx *bolt.Tx) (*bolt.Bucket, error) {
	root := tx.Bucket(g.name)
	if root == nil {
		return nil, ErrNoGroup
	}
	return root, nil
}

// viewData and updateData run fn with the group's bucket in data.db.
func (g *Group) viewData(fn func(root *bolt.Bucket) error) error {
	return g.db.data.view(func(tx *bolt.Tx) error { return g.withRoot(tx, fn) })
}

func (g *Group) updateData(fn func(root *bolt.Bucket) error) error {
	return g.db.data.update(func(tx *bolt.Tx) error { return g.withRoot(tx, fn) })
}

func (g *Group) withRoot(tx *bolt.Tx, fn func(root *bolt.Bucket) error) error {
	root, err := g.root(tx)
	if err != nil {
		return err
	}
	return fn(root)
}

func (g *Group) update(name []byte, fn func(*bolt.Bucket) error) error {
	return g.fileOf(name).update(func(tx *bolt.Tx) error {
		b, err := g.bucket(tx, name)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

func (g *Group) view(name []byte, fn func(*bolt.Bucket) error) error {
	return g.fileOf(name).view(func(tx *bolt.Tx) error {
		b, err := g.bucket(tx, name)
		if err != nil {
			return err
		}
		return fn(b)
	})
}
