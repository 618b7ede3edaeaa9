package manager

import (
	"fmt"
	"slices"
	"testing"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// TestConsumeBySeq: a consume repeated with its seq answers the same messages; the
// messages of a reply the managers did not record are handed out again, not skipped;
// a consumer that read without seq first continues where it stood.
func TestConsumeBySeq(t *testing.T) {
	m, _, _ := startWithBrokers(t, "seq", "b1")
	if code := call(t, m, "POST", "/topics", `{"name":"t","partitions":1}`, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	var pr managerapi.ProducerReply
	call(t, m, "POST", "/producer/register", `{"topic":"t"}`, &pr)
	for i := range 8 {
		body := fmt.Sprintf(`{"topic":"t","producer_id":%d,"message":"m%d"}`, pr.ProducerID, i)
		if code := call(t, m, "POST", "/producer/produce", body, nil); code != 200 {
			t.Fatalf("produce: %d", code)
		}
	}
	consume := func(id uint64, query string) (int, []string) {
		t.Helper()
		var r managerapi.ConsumeReply
		code := call(t, m, "GET", fmt.Sprintf("/consumer/consume?topic=t&consumer_id=%d&%s", id, query), "", &r)
		if r.Message != nil {
			r.Messages = []string{*r.Message}
		}
		return code, r.Messages
	}
	want := func(id uint64, query string, msgs ...string) {
		t.Helper()
		if code, got := consume(id, query); code != 200 || !slices.Equal(got, msgs) {
			t.Fatalf("consume %s: %d %v, want %v", query, code, got, msgs)
		}
	}
	var cr managerapi.ConsumerReply
	call(t, m, "POST", "/consumer/register", `{"topic":"t"}`, &cr)
	want(cr.ConsumerID, "seq=1&max=2", "m0", "m1")
	want(cr.ConsumerID, "seq=1&max=2", "m0", "m1") // the reply was lost: the same again
	want(cr.ConsumerID, "seq=2&max=2", "m2", "m3")
	// A consume the partition served and the managers never recorded (a manager died
	// between the two) moved the partition's consumer: the next seq still gets them.
	want(cr.ConsumerID, "max=2", "m4", "m5")
	want(cr.ConsumerID, "seq=3&max=2", "m4", "m5")
	if code, _ := consume(cr.ConsumerID, "seq=2"); code != 409 {
		t.Fatalf("a seq behind the last: %d, want 409", code)
	}
	if code, _ := consume(cr.ConsumerID, "seq=4&offset=0"); code != 400 {
		t.Fatalf("seq with offset: %d, want 400", code)
	}

	// Read without seq first: consumes by seq go on from where the consumer stood.
	var other managerapi.ConsumerReply
	call(t, m, "POST", "/consumer/register", `{"topic":"t"}`, &other)
	want(other.ConsumerID, "max=3", "m0", "m1", "m2")
	want(other.ConsumerID, "seq=7", "m3")
	want(other.ConsumerID, "seq=7", "m3")
	want(other.ConsumerID, "seq=8&max=10", "m4", "m5", "m6", "m7")
	if code, _ := consume(other.ConsumerID, "seq=9"); code != 404 {
		t.Fatalf("at the end: %d, want 404", code)
	}
}
