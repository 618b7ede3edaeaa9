package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/internal/retry"
)

func init() { subcommands = append(subcommands, newConsumeCmd) }

type consumeOpts struct {
	topic      string
	consumerID string
	partition  int
	follow     bool
	count      int
	batch      int
	offsets    bool
}

func newConsumeCmd() *cobra.Command {
	cf := &clientFlags{}
	o := &consumeOpts{}
	cmd := &cobra.Command{
		Use:   "consume --topic T [--follow] [--count N]",
		Short: "Print a topic's messages, one per line, as a new (or resumed) consumer",
		Long: `Print a topic's messages, one per line. Without --follow it stops at the end of
the topic; with --count N it stops after N messages. The consumer id goes to stderr;
--consumer-id resumes that consumer where it stopped.`,
		Example: `  quorumq consume --topic orders
  quorumq consume --topic orders --follow --offsets`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConsume(cmd.Context(), cf, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cf.register(cmd.Flags())
	f := cmd.Flags()
	f.StringVarP(&o.topic, "topic", "t", "", "topic to read (required)")
	f.StringVar(&o.consumerID, "consumer-id", "", "resume this consumer instead of registering a new one")
	f.IntVar(&o.partition, "partition", -1, "read only this partition")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep waiting for new messages (until Ctrl-C or --count)")
	f.IntVarP(&o.count, "count", "n", 0, "stop after this many messages (0: no limit)")
	f.IntVar(&o.batch, "batch", 100, "most messages fetched per request")
	f.BoolVar(&o.offsets, "offsets", false, "prefix each message with its partition and offset")
	_ = cmd.MarkFlagRequired("topic")
	_ = cmd.RegisterFlagCompletionFunc("topic", cf.completeTopics)
	return cmd
}

func runConsume(ctx context.Context, cf *clientFlags, o *consumeOpts, stdout, stderr io.Writer) error {
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	var opts []clientlib.ConsumerOption
	if o.partition >= 0 {
		opts = append(opts, clientlib.FromPartition(o.partition))
	}
	if o.consumerID != "" {
		opts = append(opts, clientlib.WithConsumerID(o.consumerID))
	}
	setup, cancel := context.WithTimeout(ctx, cf.timeout)
	cs, err := c.NewConsumer(setup, o.topic, opts...)
	cancel()
	if err != nil {
		return err
	}
	// The id is announced once the managers have accepted it: at registration, or for
	// --consumer-id at the first read (an unknown id fails there, and must not be
	// offered for resuming).
	announce := func() { fmt.Fprintf(stderr, "consumer %s (resume with --consumer-id %s)\n", cs.ID(), cs.ID()) }
	if o.consumerID == "" {
		announce()
		announce = func() {}
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	idle := retry.Policy{First: 50 * time.Millisecond, Max: time.Second}.Start()
	got := 0
	for o.count == 0 || got < o.count {
		max := o.batch
		if o.count > 0 {
			max = min(max, o.count-got)
		}
		call, cancel := context.WithTimeout(ctx, cf.timeout)
		msgs, err := cs.Poll(call, max)
		cancel()
		if ctx.Err() != nil {
			return nil // Ctrl-C ends a follow
		}
		if err != nil {
			return err
		}
		announce()
		announce = func() {}
		for _, m := range msgs {
			if o.offsets {
				fmt.Fprintf(out, "%d\t%d\t", m.Partition, m.Offset)
			}
			fmt.Fprintln(out, m.Value)
		}
		got += len(msgs)
		if o.follow { // someone is watching: show each batch as it comes
			if err := out.Flush(); err != nil {
				return err
			}
		}
		if len(msgs) > 0 {
			idle.Reset()
			continue
		}
		if !o.follow {
			break
		}
		if idle.Wait(ctx) != nil { // the end of the topic: wait a little longer each time for more
			return nil
		}
	}
	return out.Flush()
}
