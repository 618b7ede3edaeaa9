package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
)

// newBrokerAdminCmds are the operator's commands about brokers, through the managers:
// status, decommission, cancel-decommission.
func newBrokerAdminCmds() []*cobra.Command {
	preRun := func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) }
	status := &cobra.Command{
		Use:   "status",
		Short: "Show every broker: state, replicas, leaders and the replica moves under way",
		Long: `Show every broker as the managers see it: its state (alive, dead, decommissioning,
released), the replicas it holds and the partitions it leads, and the replica moves
from and to it: pending (replicas of a dead or decommissioning broker not moving yet),
in flight, done and failed attempts (failed moves are retried), as the write manager
counted them since it took over.`,
		Example: "  quorumq broker status --consul 127.0.0.1:8500",
		Args:    cobra.NoArgs,
		PreRunE: preRun,
	}
	decommission := &cobra.Command{
		Use:   "decommission ID",
		Short: "Move every replica off a broker, then release it (see broker status for progress)",
		Long: `Decommission a broker: the write manager moves its replicas to the other brokers,
a bounded number at a time, each new replica catching up before the old one leaves
its group, and releases the broker once it holds none. The command returns at once;
broker status shows the progress, and cancel-decommission stops it.`,
		Args:    cobra.ExactArgs(1),
		PreRunE: preRun,
	}
	cancel := &cobra.Command{
		Use:     "cancel-decommission ID",
		Short:   "Take a decommissioning broker back: it keeps the replicas it still holds",
		Args:    cobra.ExactArgs(1),
		PreRunE: preRun,
	}
	for _, c := range []struct {
		cmd *cobra.Command
		run func(ctx context.Context, cl *clientlib.Client, out io.Writer, args []string) error
	}{
		{status, printBrokers},
		{decommission, func(ctx context.Context, cl *clientlib.Client, out io.Writer, args []string) error {
			if err := cl.Admin().Decommission(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(out, "broker %s is decommissioning: its replicas move to other brokers, then it is released (quorumq broker status shows the progress)\n", args[0])
			return err
		}},
		{cancel, func(ctx context.Context, cl *clientlib.Client, out io.Writer, args []string) error {
			if err := cl.Admin().CancelDecommission(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(out, "decommission of broker %s cancelled: it keeps the replicas it still holds\n", args[0])
			return err
		}},
	} {
		cf := &clientFlags{}
		cf.register(c.cmd.Flags())
		c.cmd.RunE = func(cmd *cobra.Command, args []string) error {
			return cf.withClient(cmd.Context(), cmd.ErrOrStderr(), func(ctx context.Context, cl *clientlib.Client) error {
				return c.run(ctx, cl, cmd.OutOrStdout(), args)
			})
		}
	}
	return []*cobra.Command{status, decommission, cancel}
}

func printBrokers(ctx context.Context, cl *clientlib.Client, out io.Writer, _ []string) error {
	brokers, movesBy, err := cl.Admin().Brokers(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BROKER\tSTATE\tREPLICAS\tLEADERS\tPENDING\tIN FLIGHT\tDONE\tFAILED\tADDR")
	for _, b := range brokers {
		m := b.Moves
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", b.ID, b.State, b.Replicas, b.Leaders,
			m.Pending, m.InFlight, m.Done, m.Failed, b.Addr)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if movesBy == "" {
		_, err = fmt.Fprintln(out, "moves in flight, done and failed: a read manager answered and does not count them; ask the write manager (--managers)")
	} else {
		_, err = fmt.Fprintf(out, "moves counted by the write manager %s since it took over\n", movesBy)
	}
	return err
}
