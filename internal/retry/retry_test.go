package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextDoublesUpToMax(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want []time.Duration // then no more
	}{
		{"doubling capped", Policy{First: 10 * time.Millisecond, Max: 35 * time.Millisecond},
			[]time.Duration{10, 20, 35, 35, 35}},
		{"attempts bound", Policy{First: time.Millisecond, Max: time.Second, MaxAttempts: 3},
			[]time.Duration{1, 2}},
		{"one attempt: no wait", Policy{First: time.Millisecond, Max: time.Second, MaxAttempts: 1}, nil},
		{"elapsed bound", Policy{First: time.Hour, Max: time.Hour, MaxElapsed: time.Minute}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.Start()
			unit := time.Millisecond
			if tc.p.First == time.Hour {
				unit = time.Hour
			}
			for i, w := range tc.want {
				d, ok := b.Next()
				if !ok || d != w*unit {
					t.Fatalf("wait %d = %v, %v; want %v", i, d, ok, w*unit)
				}
			}
			if tc.p.MaxAttempts > 0 || tc.p.MaxElapsed > 0 {
				if d, ok := b.Next(); ok {
					t.Fatalf("a wait of %v past the bound", d)
				}
			}
		})
	}
}

func TestJitterStaysWithinHalfEitherSide(t *testing.T) {
	b := Policy{First: 100 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: true}.Start()
	for range 1000 {
		if d, _ := b.Next(); d < 50*time.Millisecond || d >= 150*time.Millisecond {
			t.Fatalf("jittered wait %v outside [50ms, 150ms)", d)
		}
	}
}

func TestReset(t *testing.T) {
	b := Policy{First: time.Millisecond, Max: time.Second, MaxAttempts: 2}.Start()
	b.Next()
	if _, ok := b.Next(); ok {
		t.Fatal("third attempt allowed")
	}
	b.Reset()
	if d, ok := b.Next(); !ok || d != time.Millisecond {
		t.Fatalf("after Reset: %v, %v", d, ok)
	}
}

func TestDo(t *testing.T) {
	boom := errors.New("boom")
	fast := Policy{First: time.Microsecond, Max: time.Microsecond}
	for _, tc := range []struct {
		name     string
		p        Policy
		fails    int   // op fails this many times, then succeeds
		failWith error // what it fails with
		wantErr  error // nil: success
		calls    int
	}{
		{"succeeds after failures", fast, 3, boom, nil, 4},
		{"permanent stops at once", fast, 10, Permanent(boom), boom, 1},
		{"attempts run out", Policy{First: time.Microsecond, Max: time.Microsecond, MaxAttempts: 2}, 10, boom, ErrExhausted, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := Do(context.Background(), tc.p, func(context.Context) error {
				calls++
				if calls <= tc.fails {
					return tc.failWith
				}
				return nil
			})
			if calls != tc.calls {
				t.Errorf("%d calls, want %d", calls, tc.calls)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Do = %v, want %v", err, tc.wantErr)
			}
			if IsPermanent(err) {
				t.Error("Do returned the Permanent mark")
			}
		})
	}
}

func TestDoStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	boom := errors.New("boom")
	err := Do(ctx, Policy{First: time.Hour, Max: time.Hour}, func(context.Context) error {
		cancel()
		return boom
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, boom) {
		t.Fatalf("Do = %v; want the cancellation and the last error", err)
	}
}
