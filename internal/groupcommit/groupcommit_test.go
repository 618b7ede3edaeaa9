package groupcommit

import (
	"slices"
	"sync"
	"testing"
)

// recorder is a commit function that keeps its batches and can hold the committer
// inside a commit until released.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	started chan struct{} // gets a value as each commit begins
	gate    chan struct{} // a commit returns once it can receive from gate
}

func newRecorder() *recorder {
	return &recorder{started: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (r *recorder) commit(batch []int) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(batch))
	r.mu.Unlock()
	r.started <- struct{}{}
	<-r.gate
}

func (r *recorder) get() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// release lets every commit through from now on.
func (r *recorder) release() { close(r.gate) }

// TestBatches: whatever is queued while a commit runs goes together into the next
// commit, in the order queued.
func TestBatches(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		queued int // while the first request is being committed
		want   [][]int
	}{
		{"a lone writer waits for nobody", 4, 0, [][]int{{0}}},
		{"one queued meanwhile", 4, 1, [][]int{{0}, {1}}},
		{"all queued meanwhile go together", 8, 5, [][]int{{0}, {1, 2, 3, 4, 5}}},
		{"exactly max", 3, 3, [][]int{{0}, {1, 2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			l := New[int](tt.max)
			l.Start(rec.commit, nil)
			l.Queue(0)
			<-rec.started
			for i := 1; i <= tt.queued; i++ {
				if !l.Queue(i) {
					t.Fatalf("Queue(%d) refused before Close", i)
				}
			}
			rec.release()
			l.Close()
			if got := rec.get(); !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Fatalf("batches %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMaxBoundsABatch: a flood is committed in batches of at most max, in order.
func TestMaxBoundsABatch(t *testing.T) {
	rec := newRecorder()
	rec.release()
	l := New[int](3)
	l.Start(rec.commit, nil)
	for i := range 50 {
		l.Queue(i)
	}
	l.Close()
	var all []int
	for _, b := range rec.get() {
		if len(b) == 0 || len(b) > 3 {
			t.Fatalf("batch of %d: %v", len(b), b)
		}
		all = append(all, b...)
	}
	for i, v := range all {
		if v != i {
			t.Fatalf("committed %v, want 0..49 in order", all)
		}
	}
	if len(all) != 50 {
		t.Fatalf("committed %d of 50", len(all))
	}
}

// TestCloseCommitsQueued: Close commits what was queued before it, then refuses.
func TestCloseCommitsQueued(t *testing.T) {
	rec := newRecorder()
	l := New[int](8)
	l.Start(rec.commit, nil)
	l.Queue(0)
	<-rec.started
	l.Queue(1)
	l.Queue(2)
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	<-l.Closing()
	if l.Queue(3) {
		t.Fatal("Queue accepted a request after Close began")
	}
	rec.release()
	<-closed
	if got := rec.get(); !slices.EqualFunc(got, [][]int{{0}, {1, 2}}, slices.Equal) {
		t.Fatalf("batches %v", got)
	}
	l.Close() // again: returns at once
}

// TestAfterRunsAfterEachBatch: the after hook follows every commit and sees Close.
func TestAfterRunsAfterEachBatch(t *testing.T) {
	var events []string
	var mu sync.Mutex
	note := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	l := New[int](4)
	committed := make(chan struct{}, 10)
	l.Start(func(b []int) { note("commit"); committed <- struct{}{} }, func(closing <-chan struct{}) {
		note("after")
		select {
		case <-closing:
			note("closing")
		default:
		}
	})
	l.Queue(1)
	<-committed
	l.Queue(2)
	<-committed
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	if n := len(events); n < 4 || !slices.Equal(events[:4], []string{"commit", "after", "commit", "after"}) {
		t.Fatalf("events %v", events)
	}
}

// TestConcurrentWriters: every request of many writers is committed once, each
// writer's in its order (run with -race).
func TestConcurrentWriters(t *testing.T) {
	type req struct{ writer, n int }
	var mu sync.Mutex
	var got []req
	l := New[req](16)
	l.Start(func(b []req) {
		mu.Lock()
		got = append(got, b...)
		mu.Unlock()
	}, nil)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := range 200 {
				l.Queue(req{w, n})
			}
		})
	}
	wg.Wait()
	l.Close()
	next := make([]int, 8)
	for _, r := range got {
		if r.n != next[r.writer] {
			t.Fatalf("writer %d: got %d, want %d", r.writer, r.n, next[r.writer])
		}
		next[r.writer]++
	}
	for w, n := range next {
		if n != 200 {
			t.Fatalf("writer %d: %d of 200 committed", w, n)
		}
	}
}

// TestGather: one batch is what is queued, up to max, without waiting for more.
func TestGather(t *testing.T) {
	tests := []struct {
		name   string
		queued int
		max    int
		want   []int
	}{
		{"one", 1, 4, []int{0}},
		{"all queued", 3, 4, []int{0, 1, 2}},
		{"up to max", 6, 4, []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := make(chan int, tt.queued)
			for i := range tt.queued {
				q <- i
			}
			got, ok := Gather(q, nil, make([]int, 5), tt.max)
			if !ok || !slices.Equal(got, tt.want) {
				t.Fatalf("Gather = %v, %v; want %v", got, ok, tt.want)
			}
			if len(q) != tt.queued-len(tt.want) {
				t.Fatalf("%d left queued, want %d", len(q), tt.queued-len(tt.want))
			}
		})
	}
	stop := make(chan struct{})
	close(stop)
	if got, ok := Gather(make(chan int), stop, []int{7}, 4); ok || len(got) != 0 {
		t.Fatalf("Gather after stop = %v, %v", got, ok)
	}
}
