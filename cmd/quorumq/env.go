package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable a flag falls back to: QUORUMQ_<FLAG_NAME>, dashes
// as underscores.
func envName(flag string) string {
	return "QUORUMQ_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// envFallback gives every flag of cmd that the user did not set the value of its
// envName, so flags and env share one definition.
func envFallback(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			err = cmd.Flags().Set(f.Name, v)
		}
	})
	return err
}

// envSuffix marks a flag's usage text with its variable, so that --help lists them.
const envSuffix = " (env "

// documentEnv appends "(env QUORUMQ_X)" to the usage of every flag cmd declares
// (local or persistent; inherited ones are marked where they are declared). --help
// takes no variable. A flag marked already (bench's parent is shared) is left alone.
func documentEnv(cmd *cobra.Command) {
	mark := func(f *pflag.Flag) {
		if f.Name == "help" || strings.Contains(f.Usage, envSuffix) {
			return
		}
		f.Usage += envSuffix + envName(f.Name) + ")"
	}
	cmd.LocalNonPersistentFlags().VisitAll(mark)
	cmd.PersistentFlags().VisitAll(mark)
}
