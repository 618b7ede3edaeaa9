package main

import "github.com/spf13/cobra"

// benchCmd is the parent of every `quorumq bench <target>`; each component's bench file
// adds its subcommand to it in its own init (package-level vars are set before any init).
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Measure a running quorumq service (throughput and latency)",
}

func init() { subcommands = append(subcommands, func() *cobra.Command { return benchCmd }) }
