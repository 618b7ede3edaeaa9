package scenario

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Report is what a consumer's log got wrong against the producers' logs. Each list
// holds one human-readable line per problem.
type Report struct {
	Consumer   string
	Received   int // lines in the consumer's log
	Acked      int // acknowledged values over all producers
	Missing    []string
	Duplicates []string
	Unknown    []string // received but never sent
	Disorder   []string // gaps, repeats or reordering within a partition; wrong positions
}

// OK is true when the consumer got every acknowledged value exactly once, in order.
func (r Report) OK() bool {
	return len(r.Missing)+len(r.Duplicates)+len(r.Unknown)+len(r.Disorder) == 0
}

// listLimit bounds each listing of a failure message: a broken run can produce
// thousands of lines, and the first few say what went wrong.
const listLimit = 10

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "consumer %s: %d messages received, %d acknowledged", r.Consumer, r.Received, r.Acked)
	for _, l := range []struct {
		name  string
		items []string
	}{
		{"missing (acknowledged, never received)", r.Missing},
		{"received more than once", r.Duplicates},
		{"received but never sent", r.Unknown},
		{"out of order or misplaced", r.Disorder},
	} {
		if len(l.items) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n  %d %s:", len(l.items), l.name)
		for _, it := range l.items[:min(len(l.items), listLimit)] {
			b.WriteString("\n    " + it)
		}
		if len(l.items) > listLimit {
			fmt.Fprintf(&b, "\n    ... and %d more", len(l.items)-listLimit)
		}
	}
	return b.String()
}

// origin is where a value came from: which producer, its place in that producer's log.
type origin struct {
	producer string
	index    int
	sent     Sent
}

// Check compares one consumer's log with the producers' logs (producer name → log).
// Every acknowledged value must be received exactly once; unconfirmed values at most
// once. Within a partition the consumer must see offsets 0, 1, 2, ... with no gap or
// repeat, each producer's values in the order it sent them, and every acknowledged
// value at the position its acknowledgement named.
func Check(consumer string, producers map[string][]Sent, got []Received) (Report, error) {
	r := Report{Consumer: consumer, Received: len(got)}
	from := map[string]origin{}
	for name, sent := range producers {
		for i, s := range sent {
			if prev, dup := from[s.Value]; dup {
				return r, fmt.Errorf("value %q sent twice (by %s and %s): the scenario must send unique values", s.Value, prev.producer, name)
			}
			from[s.Value] = origin{producer: name, index: i, sent: s}
			if s.Acked {
				r.Acked++
			}
		}
	}

	first := map[string]Received{} // value → where it was first received
	type stream struct {
		partition int
		producer  string
	}
	nextOffset := map[int]int64{} // partition → offset expected next
	lastIndex := map[stream]int{} // index (in its producer's log) of the stream's last value
	for _, m := range got {
		at := fmt.Sprintf("%s at %d/%d", m.Value, m.Partition, m.Offset)
		if m.Offset >= 0 {
			if want := nextOffset[m.Partition]; m.Offset != want {
				r.Disorder = append(r.Disorder, fmt.Sprintf("%s: partition %d expected offset %d next", at, m.Partition, want))
			}
			nextOffset[m.Partition] = m.Offset + 1
		}
		if prev, dup := first[m.Value]; dup {
			// Its order and position were judged the first time; once more is the problem.
			r.Duplicates = append(r.Duplicates, fmt.Sprintf("%s, before at %d/%d", at, prev.Partition, prev.Offset))
			continue
		}
		first[m.Value] = m
		o, ok := from[m.Value]
		if !ok {
			r.Unknown = append(r.Unknown, at)
			continue
		}
		key := stream{m.Partition, o.producer}
		if last, ok := lastIndex[key]; ok && o.index <= last {
			r.Disorder = append(r.Disorder, fmt.Sprintf("%s: after %s's later value %s", at, o.producer, producers[o.producer][last].Value))
		} else {
			lastIndex[key] = o.index
		}
		if s := o.sent; s.Acked && s.Partition >= 0 &&
			(s.Partition != m.Partition || (s.Offset >= 0 && s.Offset != m.Offset)) {
			r.Disorder = append(r.Disorder, fmt.Sprintf("%s: acknowledged at %d/%d", at, s.Partition, s.Offset))
		}
	}

	for _, name := range slices.Sorted(maps.Keys(producers)) {
		for _, s := range producers[name] {
			if _, received := first[s.Value]; s.Acked && !received {
				r.Missing = append(r.Missing, fmt.Sprintf("%s (%s, acknowledged at %d/%d)", s.Value, name, s.Partition, s.Offset))
			}
		}
	}
	return r, nil
}
