package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
	"github.com/quorumq/quorumq/consul"
)

func init() { subcommands = append(subcommands, newTopicCmd) }

// clientFlags are the flags of every command that talks to the managers through the
// SDK (topic, produce, consume): where the managers are and how long to keep trying.
type clientFlags struct {
	managers []string
	consul   consulFlags
	timeout  time.Duration
	creds    clientCredentials
}

func (f *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.managers, "managers", nil, "manager HTTP addresses host:port,... (default: found through --consul)")
	f.consul.register(fs, "127.0.0.1:8500", "Consul HTTP address to find the managers through, when --managers is not set")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long one call keeps retrying while the managers fail over")
	f.creds.register(fs)
}

// client builds the SDK client. A call that keeps failing for a second says on stderr
// what it is trying to reach, so that a wrong address shows at once and not only at
// the end of --timeout.
func (f *clientFlags) client(stderr io.Writer) (*clientlib.Client, error) {
	target := "the managers at " + strings.Join(f.managers, ",")
	opts := []clientlib.Option{clientlib.WithRetryTimeout(f.timeout), f.creds.option()}
	if len(f.managers) > 0 {
		opts = append(opts, clientlib.WithManagers(f.managers...))
	} else {
		target = "Consul at " + f.consul.addr + " (to find the managers)"
		b, err := f.consulBackend()
		if err != nil {
			return nil, err
		}
		opts = append(opts, clientlib.WithResolver(b))
	}
	opts = append(opts, clientlib.WithRetryNotice(time.Second, func(err error, left time.Duration) {
		// A manager's answer (503 while the write manager changes) was reached: naming
		// Consul then would send the reader to the wrong place.
		var answered *clientlib.APIError
		if errors.As(err, &answered) {
			fmt.Fprintf(stderr, "quorumq: a manager answered HTTP %d (%s); retrying for %s more (--timeout)\n",
				answered.Status, answered.Message, left.Round(time.Second))
			return
		}
		fmt.Fprintf(stderr, "quorumq: still trying to reach %s: %v; retrying for %s more (--timeout)\n",
			target, err, left.Round(time.Second))
	}))
	return clientlib.New(opts...)
}

// consulBackend is Consul at --consul with --consul-token(-file), else with the
// read-only token `quorumq dev` records in --data-dir's cluster.json ("consul_token").
func (f *clientFlags) consulBackend() (*consul.Backend, error) {
	if f.consul.token == "" && f.consul.tokenFile == "" {
		st, err := devcluster.ReadState(cmp.Or(f.creds.dataDir, clientlib.DefaultDataDir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		f.consul.token = st.ConsulToken
	}
	return f.consul.backend(slog.Default())
}

// withClient runs fn with a client built from the flags, under one deadline.
func (f *clientFlags) withClient(ctx context.Context, stderr io.Writer, fn func(context.Context, *clientlib.Client) error) error {
	c, err := f.client(stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return fn(ctx, c)
}

// completeTopics offers the existing topic names for shell completion.
func (f *clientFlags) completeTopics(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 || envFallback(cmd) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	f.timeout = 2 * time.Second
	var names []string
	_ = f.withClient(cmd.Context(), io.Discard, func(ctx context.Context, c *clientlib.Client) error {
		var err error
		names, err = c.Admin().ListTopics(ctx)
		return err
	})
	return names, cobra.ShellCompDirectiveNoFileComp
}

func newTopicCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "topic",
		Short: "Create, list and describe topics",
	}
	cf.register(cmd.PersistentFlags())
	preRun := func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) }

	var (
		partitions int
		retention  retentionFlags
	)
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a topic",
		Example: "  quorumq topic create orders --partitions 3\n  quorumq topic create logs --retention-ms 24h --retention-bytes 1GiB",
		Args:    cobra.ExactArgs(1),
		PreRunE: preRun,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withClient(cmd.Context(), cmd.ErrOrStderr(), func(ctx context.Context, c *clientlib.Client) error {
				ret, err := retention.parse()
				if err != nil {
					return err
				}
				if err := c.Admin().CreateTopic(ctx, args[0], partitions, ret); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created topic %s\n", args[0])
				return nil
			})
		},
	}
	create.Flags().IntVarP(&partitions, "partitions", "p", 0, "number of partitions (0: the managers' default)")
	retention.register(create.Flags())

	list := &cobra.Command{
		Use:     "list",
		Short:   "List the topics",
		Args:    cobra.NoArgs,
		PreRunE: preRun,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cf.withClient(cmd.Context(), cmd.ErrOrStderr(), func(ctx context.Context, c *clientlib.Client) error {
				names, err := c.Admin().ListTopics(ctx)
				if err != nil {
					return err
				}
				for _, n := range names {
					fmt.Fprintln(cmd.OutOrStdout(), n)
				}
				return nil
			})
		},
	}

	describe := &cobra.Command{
		Use:               "describe NAME",
		Short:             "Show a topic's partitions, their replicas and leaders",
		Args:              cobra.ExactArgs(1),
		PreRunE:           preRun,
		ValidArgsFunction: cf.completeTopics,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withClient(cmd.Context(), cmd.ErrOrStderr(), func(ctx context.Context, c *clientlib.Client) error {
				info, err := c.Admin().DescribeTopicLive(ctx, args[0])
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintf(w, "topic %s, %d partitions%s\nPARTITION\tLEADER\tREPLICAS\n", info.Name, len(info.Partitions), retentionText(info.Retention))
				for _, p := range info.Partitions {
					leader := p.Leader
					if leader == "" {
						leader = "-"
					}
					fmt.Fprintf(w, "%d\t%s\t%s\n", p.ID, leader, strings.Join(p.Replicas, ","))
				}
				return w.Flush()
			})
		},
	}

	var count int
	grow := &cobra.Command{
		Use:               "add-partitions NAME --count N",
		Short:             "Grow a topic by N partitions",
		Args:              cobra.ExactArgs(1),
		PreRunE:           preRun,
		ValidArgsFunction: cf.completeTopics,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cf.withClient(cmd.Context(), cmd.ErrOrStderr(), func(ctx context.Context, c *clientlib.Client) error {
				if err := c.Admin().AddPartitions(ctx, args[0], count); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added %d partitions to %s\n", count, args[0])
				return nil
			})
		},
	}
	grow.Flags().IntVar(&count, "count", 1, "partitions to add")

	cmd.AddCommand(create, list, describe, grow)
	return cmd
}
