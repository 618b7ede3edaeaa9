package broker

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

func TestConsumeReplyBatch(t *testing.T) {
	tests := []struct {
		name string
		msgs []string
	}{
		{"one", []string{"a"}},
		{"several, one empty", []string{"a", "", "ccc"}},
		{"binary bytes", []string{"\x00\xff\n\"", strings.Repeat("x", 300)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := brokerapi.ConsumeReply{Offset: 7, Next: 7 + uint64(len(tt.msgs)), Left: 3, Messages: tt.msgs, Message: &tt.msgs[0]}
			h, body := encodeBatchReply(t, want, tt.msgs)
			var got brokerapi.ConsumeReply
			if err := got.UnmarshalBatch(h, body); err != nil {
				t.Fatal(err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(want)
			if string(a) != string(b) {
				t.Fatalf("got %s, want %s", a, b)
			}
		})
	}
	var r brokerapi.ConsumeReply
	if err := r.UnmarshalBatch(http.Header{}, brokerapi.AppendBatch(nil, "m")); err == nil {
		t.Fatal("a reply without its headers was accepted")
	}
	h, _ := encodeBatchReply(t, brokerapi.ConsumeReply{}, nil)
	if err := r.UnmarshalBatch(h, []byte("\x05ab")); err == nil {
		t.Fatal("a body cut short was accepted")
	}
}

// encodeBatchReply is what the broker's consume handler sends for r in MIMEBatch.
func encodeBatchReply(t testing.TB, r brokerapi.ConsumeReply, msgs []string) (http.Header, []byte) {
	app := fiber.New()
	c := app.AcquireCtx(&fasthttp.RequestCtx{})
	defer app.ReleaseCtx(c)
	bs := make([][]byte, len(msgs))
	for i, m := range msgs {
		bs[i] = []byte(m)
	}
	if err := successBatch(c, r, bs); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	c.Response().Header.VisitAll(func(k, v []byte) { h.Add(string(k), string(v)) })
	return h, append([]byte(nil), c.Response().Body()...)
}

// processCPU is the CPU time the test process has used so far, user and system: on a
// machine shared with other work a benchmark's wall time says little, its CPU time more.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time since cpu0 per message, of b.N runs of msgs.
func reportCPU(b *testing.B, cpu0 time.Duration, msgs int) {
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N*msgs), "cpu-ns/msg")
}

// BenchmarkConsumeReply is the broker's encoding and the client's decoding of a consume
// of 1,000 1 KiB messages, per message: as JSON and in MIMEBatch.
func BenchmarkConsumeReply(b *testing.B) {
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = []byte(strings.Repeat(string(rune('a'+i%26)), 1024))
	}
	r := brokerapi.ConsumeReply{Offset: 1, Next: 1001}
	app := fiber.New()
	b.Run("json", func(b *testing.B) {
		cpu0 := processCPU()
		for b.Loop() {
			c := app.AcquireCtx(&fasthttp.RequestCtx{})
			out := r
			out.Messages = make([]string, len(msgs))
			for i, m := range msgs {
				out.Messages[i] = string(m)
			}
			out.Message = &out.Messages[0]
			if err := success(c, out); err != nil {
				b.Fatal(err)
			}
			var got brokerapi.ConsumeReply
			if err := json.Unmarshal(c.Response().Body(), &got); err != nil || len(got.Messages) != len(msgs) {
				b.Fatal(err)
			}
			app.ReleaseCtx(c)
		}
		reportCPU(b, cpu0, len(msgs))
	})
	b.Run("batch", func(b *testing.B) {
		h := http.Header{}
		cpu0 := processCPU()
		for b.Loop() {
			c := app.AcquireCtx(&fasthttp.RequestCtx{})
			if err := successBatch(c, r, msgs); err != nil {
				b.Fatal(err)
			}
			for _, k := range []string{brokerapi.HeaderOffset, brokerapi.HeaderNext, brokerapi.HeaderLeft} {
				h.Set(k, string(c.Response().Header.Peek(k)))
			}
			var got brokerapi.ConsumeReply
			if err := got.UnmarshalBatch(h, c.Response().Body()); err != nil || len(got.Messages) != len(msgs) {
				b.Fatal(err)
			}
			app.ReleaseCtx(c)
		}
		reportCPU(b, cpu0, len(msgs))
	})
}
