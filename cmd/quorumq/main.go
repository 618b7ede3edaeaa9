// Command quorumq is the one binary of the project: every component is a subcommand.
// This file and its siblings only parse flags and call each component's Run(ctx).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
)

// The main goroutine stays on the main thread (until a command lets go of it): a
// broker re-executes itself from there at start (internal/timerslack), and only the main
// thread carries what the parent set up, such as the parent-death signal `quorumq dev`
// gives its children.
func init() { runtime.LockOSThread() }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		reportError(os.Stderr, err)
		os.Exit(1)
	}
}

// reportError prints a command's failure and, for a write, whether it took effect.
func reportError(w io.Writer, err error) {
	fmt.Fprintln(w, "error:", err)
	switch {
	case errors.Is(err, clientlib.ErrOutcomeUnknown):
		fmt.Fprintln(w, "outcome: unknown: it may have been applied (or still be); check before running it again")
	case errors.Is(err, clientlib.ErrNotApplied):
		fmt.Fprintln(w, "outcome: not applied")
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "quorumq",
		Short: "A small Raft-replicated message log and an ATM network on one consensus core",
		Long: `A small Raft-replicated message log and an ATM network on one consensus core.

Every flag falls back to an environment variable, QUORUMQ_<FLAG> with dashes as
underscores (e.g. --consul: QUORUMQ_CONSUL); each command's --help names them.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd())
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	walk(root, func(c *cobra.Command) {
		documentEnv(c)
		if c != root {
			refuseUnknownSubcommands(c)
		}
	})
	return root
}

func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// refuseUnknownSubcommands makes a command group (topic, bench) fail on a word that is
// none of its subcommands: cobra checks this for the root only, and prints a group's
// help with exit status 0, which hides a typo from scripts. The bare group still
// prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.SuggestionsMinimumDistance = 2 // what cobra uses for the root's suggestions
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		hint := ""
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			hint = " (did you mean " + strings.Join(s, " or ") + "?)"
		}
		return fmt.Errorf("unknown command %q for %q%s; see '%s --help'", args[0], cmd.CommandPath(), hint, cmd.CommandPath())
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// subcommands is filled by the init functions of the sibling files, one per component,
// so that adding a component touches only its own file.
var subcommands []func() *cobra.Command

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "quorumq", version)
		},
	}
}
