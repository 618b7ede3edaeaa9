package manager

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/quorumq/quorumq/discovery"
)

// fakeBrokers stands in for broker processes: HTTP servers speaking the brokers' API,
// sharing one in-memory log per partition group (as if replication were instant).
type fakeBrokers struct {
	mu       sync.Mutex
	logs     map[string][]string          // group → messages
	offsets  map[string]map[string]uint64 // group → consumer → next offset
	replicas map[string]map[string]bool   // broker → groups
	members  map[string]map[string]bool   // group → broker ids
}

func newFakeBrokers() *fakeBrokers {
	return &fakeBrokers{logs: map[string][]string{}, offsets: map[string]map[string]uint64{},
		replicas: map[string]map[string]bool{}, members: map[string]map[string]bool{}}
}

// start serves broker id and registers it in d.
func (f *fakeBrokers) start(t *testing.T, d *discovery.Static, id string) *http.Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.replicas[id] = map[string]bool{}
	f.mu.Unlock()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(id, w, r) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	d.Register(t.Context(), discovery.Registration{Instance: discovery.Instance{
		Service: discovery.ServiceBroker, ID: id, Addr: ln.Addr().String(),
		Meta: map[string]string{discovery.MetaRaftAddr: "raft-" + id, discovery.MetaHTTPAddr: ln.Addr().String()},
	}})
	return srv
}

func (f *fakeBrokers) holds(broker, group string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas[broker][group]
}

func (f *fakeBrokers) serve(id string, w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	if parts[0] != "partitions" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if len(parts) == 1 {
		switch r.Method {
		case http.MethodGet:
			var gs []string
			for g := range f.replicas[id] {
				gs = append(gs, g)
			}
			reply(brokerReplicasReply{Groups: gs})
		case http.MethodPost:
			var req brokerCreateReplicaRequest
			json.NewDecoder(r.Body).Decode(&req)
			f.replicas[id][req.Group] = true
			if f.members[req.Group] == nil {
				f.members[req.Group] = map[string]bool{}
			}
			if !req.Join {
				for _, p := range req.Peers {
					f.members[req.Group][p.ID] = true
				}
			}
			reply(success)
		}
		return
	}
	group, _ := url.PathUnescape(parts[1])
	if len(parts) == 2 && r.Method == http.MethodDelete {
		delete(f.replicas[id], group)
		reply(success)
		return
	}
	if !f.replicas[id][group] {
		w.WriteHeader(http.StatusNotFound)
		reply(brokerFailure{Status: "failure", Message: "no replica of " + group})
		return
	}
	switch parts[2] {
	case "members":
		if r.Method == http.MethodPost {
			var p brokerPeer
			json.NewDecoder(r.Body).Decode(&p)
			f.members[group][p.ID] = true
		} else {
			delete(f.members[group], parts[3])
		}
		reply(success)
	case "produce":
		var req brokerProduceRequest
		json.NewDecoder(r.Body).Decode(&req)
		off := uint64(len(f.logs[group]))
		f.logs[group] = append(f.logs[group], req.Messages...)
		reply(brokerProduceReply{Offset: off})
	case "consume":
		var req brokerConsumeRequest
		json.NewDecoder(r.Body).Decode(&req)
		if f.offsets[group] == nil {
			f.offsets[group] = map[string]uint64{}
		}
		from := f.offsets[group][req.Consumer]
		if req.Expected != nil {
			from = *req.Expected
		}
		end := min(from+uint64(req.Max), uint64(len(f.logs[group])))
		f.offsets[group][req.Consumer] = end
		reply(brokerConsumeReply{Messages: f.logs[group][from:end], From: from, Next: end})
	case "size":
		c := r.URL.Query().Get("consumer")
		reply(brokerSizeReply{Size: uint64(len(f.logs[group])) - f.offsets[group][c]})
	}
}
