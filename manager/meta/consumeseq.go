package meta

import "maps"

// Retry-safe consume without offsets (issue 13 point 3). A client that names each
// GET /consumer/consume with a sequence number gets, for a repeated number, the
// messages that number got the first time, and never loses one to a lost reply. The
// managers hand out messages of a partition from Consumer.Next, the position the
// consumes by seq reached, and record each reply (Consumed) before it goes out. A
// reply the broker served but the managers did not record leaves Next where it was:
// the broker hands the same messages out again (it treats an offset behind the
// consumer as a retry), so nothing is skipped.

// SeqReply is what a consume by seq answered: Count messages of Partition from From.
type SeqReply struct {
	Seq       uint64 `json:"seq"`
	Partition int    `json:"partition"`
	From      uint64 `json:"from"`
	Count     int    `json:"count"`
}

// Consumed records the reply to a consume by seq (Seq > 0), or, with Seq 0, where a
// consumer stands in a partition it had not consumed by seq yet (From, as the
// partition said): from then on the managers hand out that partition from there.
type Consumed struct {
	Consumer  uint64 `json:"consumer"`
	Seq       uint64 `json:"seq"`
	Partition int    `json:"partition"`
	From      uint64 `json:"from"`
	Count     int    `json:"count"`
}

func (s *State) consumed(c *Consumed) (Result, Changes) {
	con, ok := s.Consumers[c.Consumer]
	if !ok {
		return fail(errf(CodeInvalid, "consumer %d is not registered", c.Consumer))
	}
	t := s.Topics[con.Topic]
	if t == nil || c.Partition < 0 || c.Partition >= len(t.Partitions) || c.Count < 0 {
		return fail(errf(CodeInvalid, "consumer %d: no partition %d to record a consume of", c.Consumer, c.Partition))
	}
	if c.Seq == 0 {
		if _, known := con.Next[c.Partition]; known {
			return Result{}, Changes{} // learned twice: the first stands
		}
		con.Next = maps.Clone(con.Next)
		if con.Next == nil {
			con.Next = map[int]uint64{}
		}
		con.Next[c.Partition] = c.From
		s.Consumers[c.Consumer] = con
		return Result{}, Changes{Positions: []uint64{c.Consumer}}
	}
	reply := SeqReply{Seq: c.Seq, Partition: c.Partition, From: c.From, Count: c.Count}
	if last := con.Last; last != nil && c.Seq <= last.Seq {
		if *last == reply { // the record of the same reply, retried
			return Result{}, Changes{}
		}
		return fail(errf(CodeConflict, "consumer %d: seq %d is not after its last consume (seq %d)", c.Consumer, c.Seq, last.Seq))
	}
	con.Last = &reply
	con.Next = maps.Clone(con.Next)
	if con.Next == nil {
		con.Next = map[int]uint64{}
	}
	con.Next[c.Partition] = c.From + uint64(c.Count)
	s.Consumers[c.Consumer] = con
	return Result{}, Changes{Positions: []uint64{c.Consumer}}
}
