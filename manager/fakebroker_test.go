package manager

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// fakeBrokers stands in for broker processes: HTTP servers speaking the brokers' API,
// sharing one in-memory log per partition group (as if replication were instant).
type fakeBrokers struct {
	mu       sync.Mutex
	logs     map[string][]string                      // group → messages
	offsets  map[string]map[string]uint64             // group → consumer → next offset
	replicas map[string]map[string]bool               // broker → groups
	members  map[string]map[string]bool               // group → broker ids
	opening  map[string]bool                          // groups whose replicas fail to open (503), as if still opening
	manager  map[string]brokerapi.ManagerAnnouncement // broker → the write manager it records
	reads    map[string]int                           // broker → reads by offset it answered
	failing  map[string]bool                          // brokers whose reads by offset fail (500)
	lagging  map[string]bool                          // brokers whose replicas report an empty Raft log (fakeLogLast otherwise)
	// leaders, when it has a group, is the broker every replica of it names as leader
	// ("" none); without, each replica names itself and says it leads (replication
	// is instant here: any replica will do).
	leaders map[string]string
	// secured serves TLS with broker certificates of proctest's CA, for secured
	// manager processes.
	secured bool
}

func newFakeBrokers() *fakeBrokers {
	return &fakeBrokers{logs: map[string][]string{}, offsets: map[string]map[string]uint64{},
		replicas: map[string]map[string]bool{}, members: map[string]map[string]bool{}, opening: map[string]bool{},
		manager: map[string]brokerapi.ManagerAnnouncement{}, reads: map[string]int{}, failing: map[string]bool{},
		lagging: map[string]bool{}, leaders: map[string]string{}}
}

// writeManager is who broker id records as the write manager.
func (f *fakeBrokers) writeManager(id string) brokerapi.ManagerAnnouncement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.manager[id]
}

// setFailing makes broker id's reads by offset fail (or work again).
func (f *fakeBrokers) setFailing(id string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing[id] = failing
}

// readCounts returns how many reads by offset each broker answered, and resets them.
func (f *fakeBrokers) readCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.reads
	f.reads = map[string]int{}
	return out
}

// start serves broker id and registers it in d, with a health check on /healthz.
func (f *fakeBrokers) start(t *testing.T, d discovery.Registrar, id string) *http.Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.replicas[id] = map[string]bool{}
	f.mu.Unlock()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.serve(id, w, r) })}
	scheme := "http"
	if f.secured {
		node, err := proctest.Credentials(t).Node(secure.Identity{Role: secure.RoleBroker, ID: id})
		if err != nil {
			t.Fatal(err)
		}
		ln, scheme = tls.NewListener(ln, node.ServerConfig(tls.VerifyClientCertIfGiven)), "https"
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	err = d.Register(t.Context(), discovery.Registration{Instance: discovery.Instance{
		Service: discovery.ServiceBroker, ID: id, Addr: ln.Addr().String(),
		Meta: map[string]string{discovery.MetaRaftAddr: "raft-" + id, discovery.MetaHTTPAddr: ln.Addr().String()},
	}, HealthURL: scheme + "://" + ln.Addr().String() + "/healthz", CheckInterval: 500 * time.Millisecond, DeregisterAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// setLeader makes every replica of group name leader as the one leading ("": none).
func (f *fakeBrokers) setLeader(group, leader string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaders[group] = leader
}

// fakeLogLast is the last Raft log index every replica reports, but a lagging one.
const fakeLogLast = 5

// setLagging makes broker id's replicas report an empty Raft log, as a member just
// added that has received nothing yet (or catch up again).
func (f *fakeBrokers) setLagging(id string, lagging bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lagging[id] = lagging
}

// setOpening makes the replicas of group fail to open (or open again).
func (f *fakeBrokers) setOpening(group string, opening bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opening[group] = opening
}

func (f *fakeBrokers) holds(broker, group string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replicas[broker][group]
}

func (f *fakeBrokers) serve(id string, w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	failure := func(status int, msg string) {
		reply(status, brokerapi.Failure{Failure: httpjson.Failure{Status: "failure", Message: msg}})
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if parts[0] == "healthz" {
		reply(200, managerapi.Success)
		return
	}
	if parts[0] == "manager" {
		cur := f.manager[id]
		if r.Method == http.MethodPut {
			var a brokerapi.ManagerAnnouncement
			json.NewDecoder(r.Body).Decode(&a)
			accepted := a.Term > cur.Term || a.Term == cur.Term && a.ID == cur.ID // the broker's term rule
			if accepted {
				f.manager[id], cur = a, a
			}
			reply(200, brokerapi.AnnounceReply{Accepted: accepted, Manager: cur})
			return
		}
		reply(200, cur)
		return
	}
	if parts[0] == "replicas" && len(parts) >= 3 {
		n, _ := strconv.Atoi(parts[2])
		g := meta.GroupName(parts[1], n)
		switch {
		case len(parts) == 3 && r.Method == http.MethodGet:
			st := brokerapi.ReplicaStatus{Topic: parts[1], Partition: n, Leader: brokerapi.Peer{ID: id}, IsLeader: true, LogLast: fakeLogLast}
			if f.lagging[id] {
				st.LogLast = 0
			}
			if l, ok := f.leaders[g]; ok {
				st.Leader, st.IsLeader = brokerapi.Peer{ID: l}, l == id
			}
			reply(200, st)
			return
		case len(parts) == 3 && r.Method == http.MethodDelete:
			delete(f.replicas[id], g)
		case len(parts) == 4 && r.Method == http.MethodGet: // messages by offset
			switch {
			case f.failing[id]:
				failure(http.StatusInternalServerError, "broken on purpose")
				return
			case !f.replicas[id][g]:
				failure(http.StatusNotFound, "broker has no replica of "+g)
				return
			}
			f.reads[id]++
			q := r.URL.Query()
			off, _ := strconv.ParseUint(q.Get("offset"), 10, 64)
			n, _ := strconv.ParseUint(q.Get("max"), 10, 64)
			log := f.logs[g]
			from := min(off, uint64(len(log)))
			end := min(from+n, uint64(len(log)))
			reply(200, brokerapi.ReadAtReply{Offset: off, Messages: append([]string{}, log[from:end]...), Next: max(off, end), End: uint64(len(log))})
			return
		case len(parts) == 4 && r.Method == http.MethodPost && parts[3] == "leader":
			var tr brokerapi.TransferRequest
			json.NewDecoder(r.Body).Decode(&tr)
			f.leaders[g] = tr.ID
		case len(parts) == 4 && r.Method == http.MethodPost:
			var p brokerapi.Peer
			json.NewDecoder(r.Body).Decode(&p)
			f.members[g][p.ID] = true
		case len(parts) == 5 && r.Method == http.MethodDelete:
			delete(f.members[g], parts[4])
		}
		reply(200, managerapi.Success)
		return
	}
	var body struct {
		brokerapi.CreateReplicaRequest
		ConsumerID string   `json:"consumer_id"`
		Offset     *uint64  `json:"offset"`
		Max        int      `json:"max"`
		Messages   []string `json:"messages"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	q := r.URL.Query()
	if r.Method == http.MethodGet && parts[0] == "size" {
		n, _ := strconv.Atoi(q.Get("partition"))
		body.Topic, body.Partition, body.ConsumerID = q.Get("topic"), &n, q.Get("consumer_id")
	}
	var g string
	if body.Partition != nil {
		g = meta.GroupName(body.Topic, *body.Partition)
	}
	if parts[0] != "replicas" && !f.replicas[id][g] {
		failure(http.StatusNotFound, "broker has no replica of "+g)
		return
	}
	offsets := f.offsets[g]
	if offsets == nil {
		offsets = map[string]uint64{}
		f.offsets[g] = offsets
	}
	off, registered := offsets[body.ConsumerID]
	switch {
	case parts[0] == "replicas" && r.Method == http.MethodGet:
		var out brokerapi.ListReplicasReply
		for g := range f.replicas[id] {
			var rs brokerapi.ReplicaStatus
			i := strings.LastIndex(g, "/")
			rs.Topic = strings.TrimPrefix(g[:i], "p/")
			rs.Partition, _ = strconv.Atoi(g[i+1:])
			out.Replicas = append(out.Replicas, rs)
		}
		reply(200, out)
	case parts[0] == "replicas" && f.opening[g]:
		failure(http.StatusServiceUnavailable, "replica of "+g+" is still opening")
	case parts[0] == "replicas":
		f.replicas[id][g] = true
		if f.members[g] == nil {
			f.members[g] = map[string]bool{}
		}
		reply(200, managerapi.Success)
	case parts[0] == "produce":
		o := uint64(len(f.logs[g]))
		f.logs[g] = append(f.logs[g], body.Messages...)
		reply(200, brokerapi.ProduceReply{Offset: o, Count: len(body.Messages)})
	case parts[0] == "consumers":
		offsets[body.ConsumerID] = off
		reply(200, managerapi.Success)
	case !registered:
		failure(http.StatusNotFound, "consumer "+body.ConsumerID+" is not registered")
	case parts[0] == "consume":
		cur := off
		if body.Offset != nil { // the partition's rule: behind is a retry, ahead is refused
			if *body.Offset > cur {
				reply(http.StatusConflict, brokerapi.Failure{Failure: httpjson.Failure{Status: "failure", Message: "offset ahead"}, Offset: &cur})
				return
			}
			off = *body.Offset
		}
		end := min(off+uint64(max(body.Max, 1)), uint64(len(f.logs[g])))
		if end <= off {
			reply(http.StatusNotFound, brokerapi.Failure{Failure: httpjson.Failure{Status: "failure", Message: "no messages left for consumer", Code: brokerapi.CodeEmpty}})
			return
		}
		offsets[body.ConsumerID] = max(end, cur)
		reply(200, brokerapi.ConsumeReply{Offset: off, Messages: f.logs[g][off:end], Next: end})
	case parts[0] == "size":
		reply(200, brokerapi.SizeReply{Size: uint64(len(f.logs[g])) - off})
	}
}
