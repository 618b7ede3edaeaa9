package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/uptrace/bun"

	"github.com/quorumq/quorumq/manager/meta"
)

// The tables, one row per entity, so that psql shows the metadata plainly. The
// migrations (migrate.go) create and change them: a change to a row type here needs a
// migration that makes the same change to existing databases.

type topicRow struct {
	bun.BaseModel  `bun:"table:topics"`
	Name           string `bun:"name,pk"`
	Replication    int    `bun:"replication,notnull"`
	Partitions     int    `bun:"partitions,notnull"`
	RetentionMs    int64  `bun:"retention_ms,notnull,default:0"`
	RetentionBytes int64  `bun:"retention_bytes,notnull,default:0"`
}

type partitionRow struct {
	bun.BaseModel `bun:"table:partitions"`
	Topic         string `bun:"topic,pk"`
	Index         int    `bun:"partition,pk"`
	Leader        string `bun:"leader,notnull"`
}

type replicaRow struct {
	bun.BaseModel `bun:"table:replicas"`
	Topic         string `bun:"topic,pk"`
	Partition     int    `bun:"partition,pk"`
	Broker        string `bun:"broker_id,pk"`
}

type brokerRow struct {
	bun.BaseModel `bun:"table:brokers"`
	ID            string `bun:"id,pk"`
	Addr          string `bun:"addr,notnull"`
	RaftAddr      string `bun:"raft_addr,notnull"`
	State         string `bun:"state,notnull"`
}

type producerRow struct {
	bun.BaseModel `bun:"table:producers"`
	ID            int64  `bun:"id,pk,autoincrement:false"`
	Topic         string `bun:"topic,notnull"`
}

type consumerRow struct {
	bun.BaseModel `bun:"table:consumers"`
	ID            int64  `bun:"id,pk,autoincrement:false"`
	Topic         string `bun:"topic,notnull"`
	Partition     *int   `bun:"partition"` // NULL: the whole topic
}

// consumerNextRow is where a consumer's consumes by seq stand in a partition.
type consumerNextRow struct {
	bun.BaseModel `bun:"table:consumer_next"`
	Consumer      int64 `bun:"consumer_id,pk,autoincrement:false"`
	Partition     int   `bun:"partition,pk"`
	Next          int64 `bun:"next_offset,notnull"`
}

// consumerLastRow is the reply to a consumer's last consume by seq.
type consumerLastRow struct {
	bun.BaseModel `bun:"table:consumer_last"`
	Consumer      int64 `bun:"consumer_id,pk,autoincrement:false"`
	Seq           int64 `bun:"seq,notnull"`
	Partition     int   `bun:"partition,notnull"`
	From          int64 `bun:"first_offset,notnull"`
	Count         int   `bun:"count,notnull"`
}

// positionRows are the rows of a consumer's positions by seq.
func positionRows(c meta.Consumer) ([]consumerNextRow, []consumerLastRow) {
	var next []consumerNextRow
	for p, o := range c.Next {
		next = append(next, consumerNextRow{Consumer: int64(c.ID), Partition: p, Next: int64(o)})
	}
	slices.SortFunc(next, func(a, b consumerNextRow) int { return a.Partition - b.Partition })
	var last []consumerLastRow
	if l := c.Last; l != nil {
		last = append(last, consumerLastRow{Consumer: int64(c.ID), Seq: int64(l.Seq), Partition: l.Partition, From: int64(l.From), Count: l.Count})
	}
	return next, last
}

// keyRow is an idempotency key and the first result of its command (meta.KeyEntry).
type keyRow struct {
	bun.BaseModel `bun:"table:idempotency_keys"`
	Key           string `bun:"key,pk"`
	At            int64  `bun:"at_ms,notnull"`
	Sum           string `bun:"sum,notnull"`
	Result        string `bun:"result,notnull"` // meta.Result as JSON
}

func keyRowOf(k string, e meta.KeyEntry) keyRow {
	return keyRow{Key: k, At: e.At, Sum: e.Sum, Result: string(meta.EncodeResult(e.Result))}
}

// raftStateRow is the single row saying how far this database has applied the log.
type raftStateRow struct {
	bun.BaseModel `bun:"table:raft_state"`
	ID            int   `bun:"id,pk,autoincrement:false"`
	AppliedIndex  int64 `bun:"applied_index,notnull"`
	NextProducer  int64 `bun:"next_producer_id,notnull"`
	NextConsumer  int64 `bun:"next_consumer_id,notnull"`
}

func models() []any {
	return []any{
		(*topicRow)(nil), (*partitionRow)(nil), (*replicaRow)(nil), (*brokerRow)(nil),
		(*producerRow)(nil), (*consumerRow)(nil), (*raftStateRow)(nil), (*keyRow)(nil),
		(*consumerNextRow)(nil), (*consumerLastRow)(nil),
	}
}

// rows is the whole state as table rows.
type rows struct {
	topics     []topicRow
	partitions []partitionRow
	replicas   []replicaRow
	brokers    []brokerRow
	producers  []producerRow
	consumers  []consumerRow
	keys       []keyRow
	next       []consumerNextRow
	last       []consumerLastRow
	raft       raftStateRow
}

func topicRows(t *meta.Topic) (topicRow, []partitionRow, []replicaRow) {
	tr := topicRow{Name: t.Name, Replication: t.Replication, Partitions: len(t.Partitions),
		RetentionMs: t.Retention.Ms, RetentionBytes: t.Retention.Bytes}
	var ps []partitionRow
	var rs []replicaRow
	for _, p := range t.Partitions {
		ps = append(ps, partitionRow{Topic: t.Name, Index: p.Index, Leader: p.Leader})
		for _, b := range p.Replicas {
			rs = append(rs, replicaRow{Topic: t.Name, Partition: p.Index, Broker: b})
		}
	}
	return tr, ps, rs
}

func brokerRowOf(b *meta.Broker) brokerRow {
	return brokerRow{ID: b.ID, Addr: b.Addr, RaftAddr: b.RaftAddr, State: string(b.State)}
}

func consumerRowOf(c meta.Consumer) consumerRow {
	return consumerRow{ID: int64(c.ID), Topic: c.Topic, Partition: c.Partition}
}

func raftRow(s *meta.State, applied uint64) raftStateRow {
	return raftStateRow{ID: 1, AppliedIndex: int64(applied), NextProducer: int64(s.NextProducer), NextConsumer: int64(s.NextConsumer)}
}

func toRows(s *meta.State, applied uint64) rows {
	r := rows{raft: raftRow(s, applied)}
	for _, name := range s.TopicNames() {
		t, ps, rs := topicRows(s.Topics[name])
		r.topics = append(r.topics, t)
		r.partitions = append(r.partitions, ps...)
		r.replicas = append(r.replicas, rs...)
	}
	for _, b := range s.BrokerList() {
		r.brokers = append(r.brokers, brokerRowOf(&b.Broker))
	}
	for _, p := range s.Producers {
		r.producers = append(r.producers, producerRow{ID: int64(p.ID), Topic: p.Topic})
	}
	for _, c := range s.Consumers {
		r.consumers = append(r.consumers, consumerRowOf(c))
	}
	for _, id := range slices.Sorted(maps.Keys(s.Consumers)) {
		next, last := positionRows(s.Consumers[id])
		r.next, r.last = append(r.next, next...), append(r.last, last...)
	}
	for k, e := range s.Keys {
		r.keys = append(r.keys, keyRowOf(k, e))
	}
	slices.SortFunc(r.keys, func(a, b keyRow) int { return strings.Compare(a.Key, b.Key) })
	slices.SortFunc(r.producers, func(a, b producerRow) int { return int(a.ID - b.ID) })
	slices.SortFunc(r.consumers, func(a, b consumerRow) int { return int(a.ID - b.ID) })
	return r
}

// fromRows rebuilds the state from the tables.
func fromRows(r rows) (*meta.State, uint64) {
	s := meta.NewState()
	s.NextProducer, s.NextConsumer = uint64(r.raft.NextProducer), uint64(r.raft.NextConsumer)
	for _, t := range r.topics {
		s.Topics[t.Name] = &meta.Topic{Name: t.Name, Replication: t.Replication, Partitions: make([]meta.Partition, t.Partitions),
			Retention: meta.Retention{Ms: t.RetentionMs, Bytes: t.RetentionBytes}}
	}
	for _, p := range r.partitions {
		if t := s.Topics[p.Topic]; t != nil && p.Index < len(t.Partitions) {
			t.Partitions[p.Index] = meta.Partition{Topic: p.Topic, Index: p.Index, Leader: p.Leader, Retention: t.Retention}
		}
	}
	for _, rr := range r.replicas {
		if t := s.Topics[rr.Topic]; t != nil && rr.Partition < len(t.Partitions) {
			p := &t.Partitions[rr.Partition]
			p.Replicas = append(p.Replicas, rr.Broker)
		}
	}
	for _, t := range s.Topics {
		for i := range t.Partitions {
			slices.Sort(t.Partitions[i].Replicas)
		}
	}
	for _, b := range r.brokers {
		s.Brokers[b.ID] = &meta.Broker{ID: b.ID, Addr: b.Addr, RaftAddr: b.RaftAddr, State: meta.BrokerState(b.State)}
	}
	for _, p := range r.producers {
		s.Producers[uint64(p.ID)] = meta.Producer{ID: uint64(p.ID), Topic: p.Topic}
	}
	for _, c := range r.consumers {
		s.Consumers[uint64(c.ID)] = meta.Consumer{ID: uint64(c.ID), Topic: c.Topic, Partition: c.Partition}
	}
	for _, n := range r.next {
		if c, ok := s.Consumers[uint64(n.Consumer)]; ok {
			if c.Next == nil {
				c.Next = map[int]uint64{}
			}
			c.Next[n.Partition] = uint64(n.Next)
			s.Consumers[c.ID] = c
		}
	}
	for _, l := range r.last {
		if c, ok := s.Consumers[uint64(l.Consumer)]; ok {
			c.Last = &meta.SeqReply{Seq: uint64(l.Seq), Partition: l.Partition, From: uint64(l.From), Count: l.Count}
			s.Consumers[c.ID] = c
		}
	}
	for _, k := range r.keys {
		var res meta.Result
		// Written by EncodeResult: it decodes (a refusal comes back as an error too).
		_ = json.Unmarshal([]byte(k.Result), &res)
		s.Keys[k.Key] = meta.KeyEntry{At: k.At, Sum: k.Sum, Result: res}
	}
	return s, uint64(r.raft.AppliedIndex)
}

// readRows reads every table in a stable order.
func readRows(ctx context.Context, db bun.IDB) (rows, error) {
	var r rows
	queries := []struct {
		dest  any
		order string
	}{
		{&r.topics, "name"},
		{&r.partitions, "topic, partition"},
		{&r.replicas, "topic, partition, broker_id"},
		{&r.brokers, "id"},
		{&r.producers, "id"},
		{&r.consumers, "id"},
		{&r.keys, "key"},
		{&r.next, "consumer_id, partition"},
		{&r.last, "consumer_id"},
	}
	for _, q := range queries {
		if err := db.NewSelect().Model(q.dest).OrderExpr(q.order).Scan(ctx); err != nil {
			return rows{}, fmt.Errorf("pgstore: read %T: %w", q.dest, err)
		}
	}
	if err := db.NewSelect().Model(&r.raft).Where("id = 1").Scan(ctx); err != nil {
		return rows{}, fmt.Errorf("pgstore: read raft_state: %w", err)
	}
	return r, nil
}

// insertAll inserts each non-empty slice of rows (given as pointers to slices).
func insertAll(ctx context.Context, db bun.IDB, tables ...any) error {
	for _, t := range tables {
		if reflect.ValueOf(t).Elem().Len() == 0 {
			continue
		}
		if _, err := db.NewInsert().Model(t).Exec(ctx); err != nil {
			return fmt.Errorf("pgstore: insert %T: %w", t, err)
		}
	}
	return nil
}
