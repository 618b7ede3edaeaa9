package clientlib

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeManager is an in-memory stand-in for the managers' REST API, with hooks to fail
// requests or lose replies. It keeps the semantics the SDK relies on: produce dedup by
// producer_id + seq per partition, consume from the offset the request names.
type fakeManager struct {
	mu        sync.Mutex
	topics    map[string][][]string // topic → partition → messages
	producers map[string]string     // id → topic
	consumers map[string]*fakeConsumer
	lastSeq   map[string]fakeBatch // "producer/partition" → last stored request
	nextID    int
	calls     map[string]int // "METHOD /path" → requests seen
	// brokers, when set, is the reply to GET /brokers (id → HTTP address); without it
	// the fake has no such route, as the seed's managers had not.
	brokers map[string]string
	// forward, when set, stores produced batches on a broker in place of the fake's own
	// log, as the managers do (producer named "p<id>"): both paths reach one partition.
	forward func(producer string, part int, seq uint64, msgs []string) (first uint64, ok bool)

	// fail, when set, may answer a request itself (return true) before the fake does.
	fail func(w http.ResponseWriter, r *http.Request, n int) bool
	// drop, when set, makes the fake do the work and then close the connection
	// without a reply: the lost reply that retries must survive.
	drop func(r *http.Request, n int) bool
}

type fakeBatch struct{ seq, first uint64 }

type fakeConsumer struct {
	topic   string
	offsets map[int]int
	// the last consume by seq and what it answered
	lastSeq                   string
	lastPart, lastFrom, lastN int
}

func newFake(t *testing.T) (*fakeManager, *httptest.Server) {
	f := &fakeManager{
		topics: map[string][][]string{}, producers: map[string]string{},
		consumers: map[string]*fakeConsumer{}, lastSeq: map[string]fakeBatch{}, calls: map[string]int{},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeManager) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *fakeManager) messages(topic string, p int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.topics[topic][p]...)
}

func (f *fakeManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	f.calls[key]++
	n := f.calls[key]
	fail, drop := f.fail, f.drop
	f.mu.Unlock()
	if fail != nil && fail(w, r, n) {
		return
	}
	if drop == nil || !drop(r, n) {
		f.serve(w, r)
		return
	}
	f.serve(httptest.NewRecorder(), r)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func reply(w http.ResponseWriter, status int, fields map[string]any) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["status"] = "success"
	if status >= 400 {
		fields["status"] = "failure"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(fields)
}

func failure(w http.ResponseWriter, status int, msg string) {
	reply(w, status, map[string]any{"message": msg})
}

func (f *fakeManager) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body struct {
		Name       string   `json:"name"`
		Partitions int      `json:"partitions"`
		Count      int      `json:"count"`
		Topic      string   `json:"topic"`
		ProducerID int      `json:"producer_id"`
		Partition  *int     `json:"partition"`
		Seq        *uint64  `json:"seq"`
		Message    *string  `json:"message"`
		Messages   []string `json:"messages"`
	}
	if r.Method == http.MethodPost {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			failure(w, 400, "bad json: "+err.Error())
			return
		}
	}
	q := r.URL.Query()
	switch {
	case r.Method == "POST" && r.URL.Path == "/topics":
		if body.Name == "" {
			failure(w, 400, "topic name is empty")
			return
		}
		if _, ok := f.topics[body.Name]; ok {
			failure(w, 409, "topic already exists")
			return
		}
		f.topics[body.Name] = make([][]string, max(body.Partitions, 1))
		reply(w, 201, nil)
	case r.Method == "GET" && r.URL.Path == "/topics":
		names := []string{}
		for n := range f.topics {
			names = append(names, n)
		}
		reply(w, 200, map[string]any{"topics": names})
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/topics/"):
		name := r.URL.Path[len("/topics/"):]
		parts, ok := f.topics[name]
		if !ok {
			failure(w, 404, "topic not found")
			return
		}
		var ps []map[string]any
		for i := range parts {
			ps = append(ps, map[string]any{"partition": i, "leader": "b1", "replicas": []string{"b1", "b2", "b3"}})
		}
		reply(w, 200, map[string]any{"topic": map[string]any{"name": name, "partitions": ps}})
	case r.Method == "GET" && r.URL.Path == "/brokers" && f.brokers != nil:
		var bs []map[string]any
		for id, addr := range f.brokers {
			bs = append(bs, map[string]any{"id": id, "addr": addr, "state": "alive"})
		}
		reply(w, 200, map[string]any{"brokers": bs})
	case r.Method == "POST" && r.URL.Path == "/producer/register", r.Method == "POST" && r.URL.Path == "/consumer/register":
		if _, ok := f.topics[body.Topic]; !ok {
			failure(w, 404, "topic not found")
			return
		}
		f.nextID++
		id := strconv.Itoa(f.nextID)
		if r.URL.Path == "/producer/register" {
			f.producers[id] = body.Topic
			reply(w, 200, map[string]any{"producer_id": f.nextID})
			return
		}
		f.consumers[id] = &fakeConsumer{topic: body.Topic, offsets: map[int]int{}}
		reply(w, 200, map[string]any{"consumer_id": f.nextID})
	case r.Method == "POST" && r.URL.Path == "/producer/produce":
		f.produce(w, body.Topic, strconv.Itoa(body.ProducerID), body.Partition, body.Seq, body.Message, body.Messages)
	case r.Method == "GET" && r.URL.Path == "/consumer/consume":
		f.consume(w, q.Get("topic"), q.Get("consumer_id"), q.Get("partition"), q.Get("offset"), q.Get("seq"), q.Get("max"))
	case r.Method == "GET" && r.URL.Path == "/size":
		c, ok := f.consumers[q.Get("consumer_id")]
		if !ok {
			failure(w, 404, "consumer not found")
			return
		}
		size := 0
		for p, msgs := range f.topics[c.topic] {
			size += len(msgs) - c.offsets[p]
		}
		reply(w, 200, map[string]any{"size": size})
	default:
		failure(w, 404, "no route "+r.Method+" "+r.URL.Path)
	}
}

func (f *fakeManager) produce(w http.ResponseWriter, topic, pid string, partition *int, seq *uint64, msg *string, msgs []string) {
	parts, ok := f.topics[topic]
	if !ok {
		failure(w, 404, "topic not found")
		return
	}
	if f.producers[pid] != topic {
		failure(w, 404, "producer not found")
		return
	}
	if partition == nil || *partition >= len(parts) || seq == nil {
		failure(w, 400, "this fake wants partition and seq")
		return
	}
	if msg != nil {
		msgs = []string{*msg}
	}
	p := *partition
	if f.forward != nil {
		first, ok := f.forward("p"+pid, p, *seq, msgs)
		if !ok {
			failure(w, 409, "stale sequence number")
			return
		}
		reply(w, 200, map[string]any{"partition": p, "offset": first})
		return
	}
	k := fmt.Sprintf("%s/%d", pid, p)
	if last, ok := f.lastSeq[k]; ok && *seq == last.seq { // a retry of what was just stored
		reply(w, 200, map[string]any{"partition": p, "offset": last.first, "duplicate": true})
		return
	} else if ok && *seq < last.seq {
		failure(w, 409, "stale sequence number")
		return
	}
	off := len(parts[p])
	f.lastSeq[k] = fakeBatch{seq: *seq, first: uint64(off)}
	parts[p] = append(parts[p], msgs...)
	reply(w, 200, map[string]any{"partition": p, "offset": off})
}

func (f *fakeManager) consume(w http.ResponseWriter, topic, cid, part, offset, seq, maxs string) {
	c, ok := f.consumers[cid]
	if !ok || c.topic != topic {
		failure(w, 404, "consumer not found")
		return
	}
	p, _ := strconv.Atoi(part)
	from := c.offsets[p]
	if offset != "" {
		from, _ = strconv.Atoi(offset)
	}
	n := 1
	if maxs != "" {
		n, _ = strconv.Atoi(maxs)
	}
	if seq != "" && seq == c.lastSeq { // the managers' rule: a repeated seq, the same messages
		p, from, n = c.lastPart, c.lastFrom, c.lastN
	}
	log := f.topics[topic][p]
	if from >= len(log) {
		failure(w, 404, "no message")
		return
	}
	end := min(from+n, len(log))
	c.offsets[p] = max(c.offsets[p], end)
	if seq != "" {
		c.lastSeq, c.lastPart, c.lastFrom, c.lastN = seq, p, from, end-from
	}
	if maxs == "" {
		reply(w, 200, map[string]any{"message": log[from], "partition": p, "offset": from, "next_offset": end})
		return
	}
	reply(w, 200, map[string]any{"messages": log[from:end], "partition": p, "offset": from, "next_offset": end})
}
