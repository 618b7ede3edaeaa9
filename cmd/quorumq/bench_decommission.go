package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/manager/managerapi"
)

func init() { benchCmd.AddCommand(newBenchDecommissionCmd()) }

// decomBench is a `quorumq bench decommission` run against a `quorumq dev` cluster,
// whose cluster.json names the processes (their pids, for memory) and the brokers'
// addresses (their replicas, for the members each partition's leader counts).
type decomBench struct {
	broker   string
	replicas int
	perTopic int
	prefix   string
	sample   time.Duration
	wait     time.Duration
}

func newBenchDecommissionCmd() *cobra.Command {
	cf := &clientFlags{}
	var b decomBench
	cmd := &cobra.Command{
		Use:   "decommission",
		Short: "Decommission a broker holding --replicas replicas of a quorumq dev cluster; prints the time and peak memory",
		Long: `Against a running ` + "`quorumq dev`" + ` (found through --data-dir's cluster.json): create
topics of --per-topic partitions until --broker holds at least --replicas replicas, wait
until every partition is led with all its replicas in its group, then decommission the
broker (DELETE /brokers/{id}) and time it until the broker is released and every
partition's leader counts its replication factor in members again.

Every --sample it reads GET /brokers (the progress), every broker's GET /replicas (the
members each leader counts: a partition counted below its replication factor at any
sample is reported, and fails the run) and the resident memory of every manager and
broker (/proc/PID/status), and prints the peaks. The decommissioned broker stays
released: run it on a fresh cluster each time.`,
		Example: `  quorumq dev --data-dir /tmp/qdev &
  quorumq bench decommission --data-dir /tmp/qdev --consul 127.0.0.1:8500 --replicas 1200`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			if b.replicas <= 0 || b.perTopic <= 0 || b.sample <= 0 || b.wait <= 0 {
				return errors.New("bench decommission: --replicas, --per-topic, --sample and --wait must be positive")
			}
			st, err := devcluster.ReadState(cf.creds.dataDir)
			if err != nil {
				return fmt.Errorf("bench decommission: %w", err)
			}
			hc, err := brokerHTTP(st)
			if err != nil {
				return fmt.Errorf("bench decommission: %w", err)
			}
			c, err := cf.client(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), b.wait)
			defer cancel()
			return b.run(ctx, c, newDevView(st, hc), cmd.OutOrStdout())
		},
	}
	cf.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&b.broker, "broker", "", "broker to decommission (default: the last broker in cluster.json)")
	f.IntVar(&b.replicas, "replicas", 1200, "replicas the broker holds when the decommission starts (topics are added until it does)")
	f.IntVar(&b.perTopic, "per-topic", 100, "partitions per topic created")
	f.StringVar(&b.prefix, "prefix", "decom-", "name prefix of the topics created (PREFIX0, PREFIX1, ...; existing ones are kept)")
	f.DurationVar(&b.sample, "sample", 3*time.Second, "how often progress, members and memory are read")
	f.DurationVar(&b.wait, "wait", 30*time.Minute, "give up after this long (setup included)")
	return cmd
}

// brokerHTTP is a client of the brokers' HTTP APIs with quorumq dev's CA and admin
// token (plain http for a --insecure cluster).
func brokerHTTP(st devcluster.State) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if st.CA != "" {
		pool, err := secure.LoadPool(st.CA)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: tokenTransport{token: st.AdminToken, next: tr}}, nil
}

type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.next.RoundTrip(r)
}

// devView reads what the processes of a dev cluster say about themselves.
type devView struct {
	hc      *http.Client
	scheme  string
	brokers []devcluster.Process
	procs   []devcluster.Process // managers and brokers
}

func newDevView(st devcluster.State, hc *http.Client) devView {
	v := devView{hc: hc, scheme: "http"}
	if st.CA != "" {
		v.scheme = "https"
	}
	for _, p := range st.Processes {
		switch p.Kind {
		case "broker":
			v.brokers = append(v.brokers, p)
			v.procs = append(v.procs, p)
		case "manager":
			v.procs = append(v.procs, p)
		}
	}
	return v
}

// members is, for every partition led, the members its leader counts (group name
// topic/partition → count).
func (v devView) members(ctx context.Context) map[string]int {
	out := map[string]int{}
	for _, b := range v.brokers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.scheme+"://"+b.Addresses["http"]+"/replicas", nil)
		if err != nil {
			continue
		}
		resp, err := v.hc.Do(req)
		if err != nil {
			continue
		}
		var r struct {
			Replicas []struct {
				Topic     string            `json:"topic"`
				Partition int               `json:"partition"`
				IsLeader  bool              `json:"is_leader"`
				Members   []json.RawMessage `json:"members"`
			} `json:"replicas"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, rep := range r.Replicas {
			if rep.IsLeader {
				out[rep.Topic+"/"+strconv.Itoa(rep.Partition)] = len(rep.Members)
			}
		}
	}
	return out
}

// rss is every manager's and broker's resident memory now, in bytes, by name.
func (v devView) rss() map[string]int64 {
	out := map[string]int64{}
	for _, p := range v.procs {
		if n, ok := procStatusBytes(p.Pid, "VmRSS:"); ok {
			out[p.Name] = n
		}
	}
	return out
}

// procStatusBytes reads a "kB" field of /proc/PID/status.
func procStatusBytes(pid int, field string) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func (b decomBench) run(ctx context.Context, c *clientlib.Client, v devView, out io.Writer) error {
	if len(v.brokers) == 0 {
		return errors.New("bench decommission: cluster.json lists no broker")
	}
	if b.broker == "" {
		b.broker = v.brokers[len(v.brokers)-1].Name
	}
	rf, partitions, err := b.populate(ctx, c, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "waiting for %d partitions to be led with %d members each\n", partitions, rf)
	for {
		m := v.members(ctx)
		short := 0
		for _, n := range m {
			if n < rf {
				short++
			}
		}
		if len(m) >= partitions && short == 0 {
			break
		}
		if err := sleepCtx(ctx, b.sample); err != nil {
			return fmt.Errorf("bench decommission: %d of %d partitions led, %d of them short of members: %w", len(m), partitions, short, err)
		}
	}
	held, err := brokerInfo(ctx, c, b.broker)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "decommissioning %s (%d replicas of %d partitions, replication %d, %d brokers); load average %s\n",
		b.broker, held.Replicas, partitions, rf, len(v.brokers), loadAverage())
	start := time.Now()
	if err := c.Admin().Decommission(ctx, b.broker); err != nil {
		return fmt.Errorf("bench decommission: %w", err)
	}
	peak := map[string]int64{}
	below := map[string]int{} // group → fewest members its leader counted
	var last string
	for {
		for name, n := range v.rss() {
			peak[name] = max(peak[name], n)
		}
		m := v.members(ctx)
		short := 0
		for g, n := range m {
			if n < rf {
				short++
				if prev, ok := below[g]; !ok || n < prev {
					below[g] = n
				}
			}
		}
		bi, err := brokerInfo(ctx, c, b.broker)
		if err == nil {
			line := fmt.Sprintf("%6.1fs %s: %d replicas, moves pending %d, in flight %d, done %d, failed %d; %d of %d partitions led",
				time.Since(start).Seconds(), bi.State, bi.Replicas, bi.Moves.Pending, bi.Moves.InFlight, bi.Moves.Done, bi.Moves.Failed, len(m), partitions)
			if line[8:] != last {
				fmt.Fprintln(out, line)
				last = line[8:]
			}
			if bi.State == "released" && len(m) >= partitions && short == 0 {
				break
			}
		}
		if err := sleepCtx(ctx, b.sample); err != nil {
			return fmt.Errorf("bench decommission: not finished after %v: %w", time.Since(start).Round(time.Second), err)
		}
	}
	took := time.Since(start)
	fmt.Fprintf(out, "decommission of %s: %d replicas moved in %.1fs (%.1f replicas/s); load average %s\n",
		b.broker, held.Replicas, took.Seconds(), float64(held.Replicas)/took.Seconds(), loadAverage())
	fmt.Fprintf(out, "peak RSS while it ran: %s\n", formatPeaks(peak))
	if len(below) > 0 {
		return fmt.Errorf("bench decommission: %d partitions were counted below replication %d by their leader: %v", len(below), rf, firstOf(below, 5))
	}
	fmt.Fprintf(out, "no partition's leader counted fewer than %d members at any sample\n", rf)
	return nil
}

// populate creates topics until the broker holds b.replicas replicas, and returns the
// replication factor and the partitions of the bench's topics.
func (b decomBench) populate(ctx context.Context, c *clientlib.Client, out io.Writer) (rf, partitions int, err error) {
	for i := 0; ; i++ {
		name := b.prefix + strconv.Itoa(i)
		info, err := c.Admin().DescribeTopic(ctx, name)
		if errors.Is(err, clientlib.ErrUnknownTopic) {
			bi, berr := brokerInfo(ctx, c, b.broker)
			if berr != nil {
				return 0, 0, berr
			}
			if bi.Replicas >= b.replicas {
				return rf, partitions, nil
			}
			t0 := time.Now()
			if cerr := c.Admin().CreateTopic(ctx, name, b.perTopic); cerr != nil && !errors.Is(cerr, clientlib.ErrTopicExists) {
				return 0, 0, fmt.Errorf("bench decommission: create %s: %w", name, cerr)
			}
			created := time.Since(t0)
			// One topic at a time, each led before the next: a thousand new groups
			// electing at once is the set-up's load, not the decommission's.
			led, lerr := waitLed(ctx, c, name)
			if lerr != nil {
				return 0, 0, lerr
			}
			fmt.Fprintf(out, "created %s (%d partitions) in %v, all led %v later; %s held %d replicas before it\n",
				name, b.perTopic, created.Round(time.Millisecond), led.Round(time.Millisecond), b.broker, bi.Replicas)
			// A read manager may answer before it has applied the create.
			for info, err = c.Admin().DescribeTopic(ctx, name); errors.Is(err, clientlib.ErrUnknownTopic); info, err = c.Admin().DescribeTopic(ctx, name) {
				if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
					return 0, 0, err
				}
			}
		}
		if err != nil {
			return 0, 0, fmt.Errorf("bench decommission: %w", err)
		}
		partitions += len(info.Partitions)
		if len(info.Partitions) > 0 {
			rf = max(rf, len(info.Partitions[0].Replicas))
		}
	}
}

// waitLed waits until every partition of topic has a live leader, and says how long
// that took.
func waitLed(ctx context.Context, c *clientlib.Client, topic string) (time.Duration, error) {
	start := time.Now()
	for {
		info, err := c.Admin().DescribeTopicLive(ctx, topic)
		if err == nil && len(info.Partitions) > 0 && !slices.ContainsFunc(info.Partitions, func(p clientlib.PartitionInfo) bool { return p.Leader == "" }) {
			return time.Since(start), nil
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, fmt.Errorf("bench decommission: waiting for %s's partitions to be led: %w", topic, err)
		}
	}
}

func brokerInfo(ctx context.Context, c *clientlib.Client, id string) (managerapi.BrokerInfo, error) {
	bs, _, err := c.Admin().Brokers(ctx)
	if err != nil {
		return managerapi.BrokerInfo{}, fmt.Errorf("bench decommission: GET /brokers: %w", err)
	}
	for _, b := range bs {
		if b.ID == id {
			return b, nil
		}
	}
	return managerapi.BrokerInfo{}, fmt.Errorf("bench decommission: the managers know no broker %q", id)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// loadAverage is the first three fields of /proc/loadavg ("?" when unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func formatPeaks(peak map[string]int64) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(peak)) {
		parts = append(parts, fmt.Sprintf("%s %d MiB", name, peak[name]>>20))
	}
	return strings.Join(parts, ", ")
}

func firstOf(m map[string]int, n int) map[string]int {
	out := map[string]int{}
	for _, k := range slices.Sorted(maps.Keys(m))[:min(n, len(m))] {
		out[k] = m[k]
	}
	return out
}
