package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envFallback gives every flag of cmd that the user did not set the value of
// QUORUMQ_<FLAG_NAME> (dashes become underscores), so flags and env share one definition.
func envFallback(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "QUORUMQ_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			err = cmd.Flags().Set(f.Name, v)
		}
	})
	return err
}
