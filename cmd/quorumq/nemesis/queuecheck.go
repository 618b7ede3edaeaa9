package nemesis

import (
	"fmt"
	"sort"
)

// QueueResult counts what the queue's history shows. Every count is a violation
// except the figures under "what happened".
type QueueResult struct {
	// Lost: an acknowledged record not stored, or a stored one a consumer never got.
	Lost int
	// Duplicated: a record stored twice, or delivered twice to one consumer.
	Duplicated int
	// Reordered: a producer's records stored out of its order in a partition, or a
	// consumer that got a partition's messages out of offset order.
	Reordered int
	// Invented: a stored or delivered message nobody sent, a delivery that does not
	// match what the partition holds, or an acknowledgement naming the wrong place.
	Invented int

	// What happened.
	Acked, Unknown, Stored, Delivered int
	Problems                          []string // the first violations, for people
}

// OK reports whether no violation was found.
func (r QueueResult) OK() bool {
	return r.Lost+r.Duplicated+r.Reordered+r.Invented == 0
}

const maxProblems = 20

func (r *QueueResult) problem(counter *int, format string, args ...any) {
	*counter++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

type place struct {
	partition int
	offset    int64
}

// CheckQueue checks a queue history. It needs no clock: only what each client was
// told, in the order it was told, and what the partitions hold at the end.
func CheckQueue(h *QueueHistory) QueueResult {
	var r QueueResult
	sent := map[string]Send{}
	for _, s := range h.Sends {
		sent[s.Value] = s
		if s.Acked {
			r.Acked++
		} else {
			r.Unknown++
		}
	}
	parts := make([]int, 0, len(h.Log))
	for p := range h.Log {
		parts = append(parts, p)
	}
	sort.Ints(parts)

	stored := map[string][]place{}
	for _, p := range parts {
		lastSeq := map[int]int{} // producer → highest seq stored so far in p
		for o, v := range h.Log[p] {
			r.Stored++
			stored[v] = append(stored[v], place{p, int64(o)})
			s, ok := sent[v]
			if !ok {
				r.problem(&r.Invented, "partition %d offset %d holds %q, which no producer sent", p, o, v)
				continue
			}
			if last, seen := lastSeq[s.Producer]; seen && s.Seq < last {
				r.problem(&r.Reordered, "partition %d offset %d holds producer %d's record %d after its record %d", p, o, s.Producer, s.Seq, last)
			}
			lastSeq[s.Producer] = max(lastSeq[s.Producer], s.Seq)
		}
	}
	for v, at := range stored {
		if len(at) > 1 {
			r.Duplicated += len(at) - 1
			if len(r.Problems) < maxProblems {
				r.Problems = append(r.Problems, fmt.Sprintf("%q stored %d times: %v", v, len(at), at))
			}
		}
	}
	for _, s := range h.Sends {
		if !s.Acked {
			continue
		}
		at, log := stored[s.Value], h.Log[s.Partition]
		switch {
		case len(at) == 0:
			r.problem(&r.Lost, "%q acknowledged at partition %d offset %d is not stored", s.Value, s.Partition, s.Offset)
		case s.Offset >= 0 && (s.Offset >= int64(len(log)) || log[s.Offset] != s.Value):
			r.problem(&r.Invented, "%q acknowledged at partition %d offset %d but stored at %v", s.Value, s.Partition, s.Offset, at)
		}
	}
	checkDeliveries(h, &r, parts)
	return r
}

// checkDeliveries checks each consumer against the partitions' contents: every
// message exactly once, in offset order per partition, each as stored.
func checkDeliveries(h *QueueHistory, r *QueueResult, parts []int) {
	byConsumer := map[int][]Delivery{}
	for _, d := range h.Deliveries {
		byConsumer[d.Consumer] = append(byConsumer[d.Consumer], d)
	}
	consumers := make([]int, 0, len(byConsumer))
	for c := range byConsumer {
		consumers = append(consumers, c)
	}
	sort.Ints(consumers)
	for _, c := range consumers {
		got := map[place]bool{}
		last := map[int]int64{}
		for _, d := range byConsumer[c] {
			r.Delivered++
			log := h.Log[d.Partition]
			if d.Offset < 0 || d.Offset >= int64(len(log)) || log[d.Offset] != d.Value {
				r.problem(&r.Invented, "consumer %d got %q at partition %d offset %d, which the partition does not hold there", c, d.Value, d.Partition, d.Offset)
				continue
			}
			pl := place{d.Partition, d.Offset}
			if got[pl] {
				r.problem(&r.Duplicated, "consumer %d got partition %d offset %d (%q) twice", c, d.Partition, d.Offset, d.Value)
				continue
			}
			got[pl] = true
			if l, ok := last[d.Partition]; ok && d.Offset < l {
				r.problem(&r.Reordered, "consumer %d got partition %d offset %d after offset %d", c, d.Partition, d.Offset, l)
			}
			last[d.Partition] = max(last[d.Partition], d.Offset)
		}
		for _, p := range parts {
			for o := range h.Log[p] {
				if !got[place{p, int64(o)}] {
					r.problem(&r.Lost, "consumer %d never got partition %d offset %d (%q)", c, p, o, h.Log[p][o])
				}
			}
		}
	}
}
