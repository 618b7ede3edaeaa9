package main

import (
	"context"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
)

// benchCmd is the parent of every `quorumq bench <target>`; each component's bench file
// adds its subcommand to it in its own init (package-level vars are set before any init).
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Measure a running quorumq service (throughput and latency)",
}

func init() { subcommands = append(subcommands, func() *cobra.Command { return benchCmd }) }

// sdkBenchCmd completes cmd as a bench of a running cluster through the SDK: it takes
// the client flags (--consul, --managers, ...), checks the bench's own flags with
// valid, then runs it with a client; setup bounds the bench's set-up calls (--timeout).
func sdkBenchCmd(cmd *cobra.Command, valid func() error,
	run func(ctx context.Context, c *clientlib.Client, setup time.Duration, out io.Writer) error) *cobra.Command {
	cf := &clientFlags{}
	cmd.Args = cobra.NoArgs
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) }
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := valid(); err != nil {
			return err
		}
		c, err := cf.client(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		defer c.Close()
		return run(cmd.Context(), c, cf.timeout, cmd.OutOrStdout())
	}
	cf.register(cmd.Flags())
	return cmd
}
