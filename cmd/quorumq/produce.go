package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/quorumq/quorumq/clientlib"
)

func init() { subcommands = append(subcommands, newProduceCmd) }

type produceOpts struct {
	topic     string
	key       string
	partition int
	count     int
	size      int
	batch     int
	progress  string
}

func newProduceCmd() *cobra.Command {
	cf := &clientFlags{}
	o := &produceOpts{}
	cmd := &cobra.Command{
		Use:   "produce --topic T [--count N --size S]",
		Short: "Send messages to a topic: lines from stdin, or --count generated ones",
		Example: `  echo hello | quorumq produce --topic orders
  quorumq produce --topic orders --count 100000 --size 1024`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runProduce(cmd.Context(), cf, o, cmd.InOrStdin(), cmd.ErrOrStderr())
		},
	}
	cf.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVarP(&o.topic, "topic", "t", "", "topic to send to (required)")
	f.StringVarP(&o.key, "key", "k", "", "key of every message (same key, same partition); default round robin")
	f.IntVar(&o.partition, "partition", -1, "send every message to this partition")
	f.IntVarP(&o.count, "count", "n", 0, "generate this many messages instead of reading stdin")
	f.IntVar(&o.size, "size", 100, "size in bytes of each generated message")
	f.IntVar(&o.batch, "batch", 500, "most messages in one request")
	f.StringVar(&o.progress, "progress", "auto", "progress bar: auto (for 10,000+ messages on a terminal), always, never")
	_ = cmd.MarkFlagRequired("topic")
	_ = cmd.RegisterFlagCompletionFunc("topic", cf.completeTopics)
	return cmd
}

func runProduce(ctx context.Context, cf *clientFlags, o *produceOpts, stdin io.Reader, stderr io.Writer) error {
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	opts := []clientlib.ProducerOption{clientlib.WithBatchSize(o.batch)}
	if o.partition >= 0 {
		opts = append(opts, clientlib.ToPartition(o.partition))
	}
	setup, cancel := context.WithTimeout(ctx, cf.timeout)
	p, err := c.NewProducer(setup, o.topic, opts...)
	cancel()
	if err != nil {
		return err
	}

	next, total := generated(o.count, o.size), int64(o.count)
	if o.count == 0 {
		next, total = lines(stdin), -1
	}
	bar := newBar(o.progress, total, stderr)
	start := time.Now()
	var sent, bytes int64
	for {
		v, ok, err := next()
		if err != nil || !ok {
			if err != nil {
				fmt.Fprintln(stderr, "reading stdin:", err)
			}
			break
		}
		if err := p.SendAsync(ctx, clientlib.Record{Key: o.key, Value: v}); err != nil {
			break // ctx cancelled (Ctrl-C): still flush what is queued
		}
		sent++
		bytes += int64(len(v))
		if bar != nil {
			bar.Add(1)
		}
	}
	// Flush even after Ctrl-C, so that the summary tells what really got through.
	flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), cf.timeout)
	defer cancel()
	err = p.Close(flush)
	if bar != nil {
		bar.Finish()
	}
	el := time.Since(start)
	if err != nil {
		return fmt.Errorf("%d messages queued, some not acknowledged: %w", sent, err)
	}
	fmt.Fprintf(stderr, "sent %d messages (%d bytes) to %s in %s: %.0f msg/s\n",
		sent, bytes, o.topic, el.Round(time.Millisecond), float64(sent)/max(el.Seconds(), 1e-9))
	if ctx.Err() != nil {
		return errors.New("interrupted: the messages counted above were acknowledged, the rest not sent")
	}
	return nil
}

// generated returns n messages of about size bytes, each starting with its number so
// that a consumer can check what arrived.
func generated(n, size int) func() (string, bool, error) {
	i := 0
	return func() (string, bool, error) {
		if i >= n {
			return "", false, nil
		}
		v := fmt.Sprintf("%09d", i)
		if len(v) < size {
			v += " " + strings.Repeat("x", size-len(v)-1)
		}
		i++
		return v, true, nil
	}
}

// lines returns stdin's lines, one message each (without the newline).
func lines(r io.Reader) func() (string, bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	return func() (string, bool, error) {
		if sc.Scan() {
			return sc.Text(), true, nil
		}
		return "", false, sc.Err()
	}
}

// newBar returns a progress bar on stderr, or nil when none is wanted: by default only
// for long runs, and only when a person is watching.
func newBar(mode string, total int64, w io.Writer) *progressbar.ProgressBar {
	f, isFile := w.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	show := mode == "always" || (mode == "auto" && tty && total >= 10000)
	if !show {
		return nil
	}
	return progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("producing"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("msg"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionFullWidth(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
}
