package scenario

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func ack(v string, p int, o int64) Sent { return Sent{Value: v, Acked: true, Partition: p, Offset: o} }
func unconfirmed(v string) Sent         { return Sent{Value: v, Partition: -1, Offset: -1} }
func rcv(p int, o int64, v string) Received {
	return Received{Partition: p, Offset: o, Value: v}
}

func TestCheck(t *testing.T) {
	producers := map[string][]Sent{
		"p1": {ack("a1", 0, 0), ack("a2", 1, 0), ack("a3", 0, 1)},
		"p2": {ack("b1", 0, 2), unconfirmed("b2"), ack("b3", 1, -1)},
	}
	tests := []struct {
		name string
		got  []Received
		// want: the number of problems of each kind (missing, duplicates, unknown, disorder)
		want [4]int
		// wantText: substrings of the report
		wantText []string
	}{
		{name: "all once in order",
			got: []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(1, 1, "b3")}},
		{name: "unconfirmed value may arrive",
			got: []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(1, 1, "b2"), rcv(1, 2, "b3")}},
		{name: "partitions interleave freely",
			got: []Received{rcv(1, 0, "a2"), rcv(0, 0, "a1"), rcv(1, 1, "b3"), rcv(0, 1, "a3"), rcv(0, 2, "b1")}},
		{name: "missing acknowledged value",
			got:      []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(1, 1, "b3")},
			want:     [4]int{1, 0, 0, 0},
			wantText: []string{"b1 (p2, acknowledged at 0/2)"}},
		{name: "duplicate at a later offset",
			got:      []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(1, 1, "b3"), rcv(0, 3, "a1")},
			want:     [4]int{0, 1, 0, 0},
			wantText: []string{"a1 at 0/3, before at 0/0"}},
		{name: "repeated offset",
			got:      []Received{rcv(0, 0, "a1"), rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(1, 1, "b3")},
			want:     [4]int{0, 1, 0, 1},
			wantText: []string{"a1 at 0/0: partition 0 expected offset 1 next"}},
		{name: "gap in offsets",
			got:      []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 2, "b1"), rcv(1, 1, "b3")},
			want:     [4]int{1, 0, 0, 1},
			wantText: []string{"b1 at 0/2: partition 0 expected offset 1 next"}},
		{name: "producer order broken within a partition",
			got:      []Received{rcv(0, 0, "a3"), rcv(0, 1, "a1"), rcv(1, 0, "a2"), rcv(0, 2, "b1"), rcv(1, 1, "b3")},
			want:     [4]int{0, 0, 0, 3},
			wantText: []string{"a1 at 0/1: after p1's later value a3"}},
		{name: "never sent",
			got:      []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(1, 1, "b3"), rcv(1, 2, "zz")},
			want:     [4]int{0, 0, 1, 0},
			wantText: []string{"received but never sent:\n    zz at 1/2"}},
		{name: "wrong partition",
			got:      []Received{rcv(0, 0, "a1"), rcv(1, 0, "a2"), rcv(0, 1, "a3"), rcv(0, 2, "b1"), rcv(0, 3, "b3")},
			want:     [4]int{0, 0, 0, 1},
			wantText: []string{"b3 at 0/3: acknowledged at 1/-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Check("c1", producers, tc.got)
			if err != nil {
				t.Fatal(err)
			}
			got := [4]int{len(r.Missing), len(r.Duplicates), len(r.Unknown), len(r.Disorder)}
			if got != tc.want {
				t.Fatalf("problems (missing, dup, unknown, disorder) = %v, want %v\n%s", got, tc.want, r)
			}
			if r.OK() != (tc.want == [4]int{}) {
				t.Fatalf("OK() = %v\n%s", r.OK(), r)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(r.String(), s) {
					t.Errorf("report lacks %q:\n%s", s, r)
				}
			}
		})
	}
}

func TestCheckRejectsValueSentTwice(t *testing.T) {
	_, err := Check("c", map[string][]Sent{"p1": {ack("x", 0, 0)}, "p2": {ack("x", 0, 1)}}, nil)
	if err == nil {
		t.Fatal("no error for a value two producers sent")
	}
}

func TestReportListingIsBounded(t *testing.T) {
	var sent []Sent
	for i := range 100 {
		sent = append(sent, ack(fmt.Sprintf("v%03d", i), 0, int64(i)))
	}
	r, err := Check("c", map[string][]Sent{"p": sent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := r.String()
	if !strings.Contains(s, "100 missing") || !strings.Contains(s, "... and 90 more") || strings.Contains(s, "v010") {
		t.Fatalf("report not bounded to %d lines per kind:\n%s", listLimit, s)
	}
}

func TestLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pl, err := CreateLog(filepath.Join(dir, "p.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Acked([]string{"a", "b"}, []int{0, 1}, []int64{5, -1}); err != nil {
		t.Fatal(err)
	}
	if err := pl.Unconfirmed([]string{"c"}); err != nil {
		t.Fatal(err)
	}
	pl.Close()
	sent, err := ReadProducerLog(filepath.Join(dir, "p.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Sent{ack("a", 0, 5), ack("b", 1, -1), unconfirmed("c")}; !slices.Equal(sent, want) {
		t.Fatalf("producer log read back as %+v, want %+v", sent, want)
	}

	cl, err := CreateLog(filepath.Join(dir, "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Received{rcv(2, 7, "x"), rcv(0, 0, "y")}
	if err := cl.Received(want); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	got, err := ReadConsumerLog(filepath.Join(dir, "c.log"))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("consumer log read back as %+v, %v; want %+v", got, err, want)
	}

	if _, err := ReadConsumerLog(filepath.Join(dir, "p.log")); err == nil || !strings.Contains(err.Error(), "p.log:1") {
		t.Fatalf("reading a producer log as a consumer log: %v, want an error naming the line", err)
	}
}
