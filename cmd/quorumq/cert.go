package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/internal/secure"
)

func init() { subcommands = append(subcommands, newCertCmd, newTokenCmd) }

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create the cluster CA and node certificates (mutual TLS between processes)",
		Long: `Every process of a secured cluster holds a certificate signed by the cluster CA; its
Common Name, role/id (broker/b1, manager/m1, atm/atm1, client/NAME), is the identity its
peers check. Managers, brokers and ATMs take them with --ca, --cert and --key, and read
them again within a second of the files changing (at once on SIGHUP): renew a
certificate by running create-node over the old files. To move to a new CA, make --ca
a bundle of both CAs (cat old.pem new.pem), give every node a certificate of the new
CA, then make --ca the new CA alone (docs/operations.md: Rotating certificates).`,
	}
	var dir string
	createCA := &cobra.Command{
		Use:     "create-ca",
		Short:   "Create the cluster CA (ca.pem, ca-key.pem) in --dir",
		Example: "  quorumq cert create-ca --dir certs",
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := secure.CreateCA(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CA written to %s (keep %s secret)\n",
				filepath.Join(dir, secure.CAFile), filepath.Join(dir, secure.CAKeyFile))
			return nil
		},
	}
	createCA.Flags().StringVar(&dir, "dir", "certs", "directory for ca.pem and ca-key.pem")

	var caDir, name, out string
	var hosts []string
	createNode := &cobra.Command{
		Use:     "create-node",
		Short:   "Create a node certificate (node.pem, node-key.pem) signed by the CA",
		Example: "  quorumq cert create-node --ca-dir certs --name broker/b1 --host broker1 --out certs/b1",
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := secure.ParseIdentity(name)
			if err != nil {
				return fmt.Errorf("--name: %w", err)
			}
			if out == "" {
				out = filepath.Join(caDir, id.ID)
			}
			if err := secure.CreateNode(caDir, id, hosts, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate of %s written to %s\n", id, filepath.Join(out, secure.NodeFile))
			return nil
		},
	}
	f := createNode.Flags()
	f.StringVar(&caDir, "ca-dir", "certs", "directory holding ca.pem and ca-key.pem")
	f.StringVar(&name, "name", "", "role/id the certificate names: "+strings.Join([]string{secure.RoleBroker, secure.RoleManager, secure.RoleATM, secure.RoleClient}, ", ")+" (required)")
	f.StringSliceVar(&hosts, "host", nil, "host names or IPs the node is reached at (127.0.0.1 and localhost are always added)")
	f.StringVar(&out, "out", "", "directory for node.pem and node-key.pem (default <ca-dir>/<id>)")
	_ = createNode.MarkFlagRequired("name")
	cmd.AddCommand(createCA, createNode, newCertInitCmd())
	return cmd
}

// newCertInitCmd is what docker-compose.yml's init service runs on every start.
func newCertInitCmd() *cobra.Command {
	var (
		dir                 string
		names, consulTokens []string
		postgres            bool
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make (once) a CA, node certificates, an admin token and the stack's other secrets in --dir",
		Long: `Make what a containerised cluster needs in --dir, keeping what exists: a CA, the
certificate of every --node (certs/<role>-<id>/), a tokens file with an admin token
(admin-token), a Consul ACL token per --consul-token service (consul/<name>.token, and
consul/acl.hcl for the Consul agent) and, with --postgres-password, a PostgreSQL
password (postgres-password).`,
		Example: "  quorumq cert init --dir /data --node manager/m1,broker/b1 --consul-token manager,broker --postgres-password",
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			var ids []secure.Identity
			for _, n := range names {
				id, err := secure.ParseIdentity(n)
				if err != nil {
					return fmt.Errorf("--node: %w", err)
				}
				ids = append(ids, id)
			}
			store, err := secure.OpenStore(dir)
			if err != nil {
				return err
			}
			if err := store.Bootstrap(ids, consulTokens, postgres); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "credentials in %s (admin token: %s)\n", store.Dir, filepath.Join(store.Dir, "admin-token"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory of the credentials (required)")
	f.StringSliceVar(&names, "node", nil, "role/id of each node to make a certificate for")
	f.StringSliceVar(&consulTokens, "consul-token", nil, "services to make a Consul ACL token for")
	f.BoolVar(&postgres, "postgres-password", false, "make a PostgreSQL password")
	return cmd
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create bearer tokens for the public APIs (managers, ATMs)",
	}
	var path, name string
	var roles, topics []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token, record its hash in the tokens file and print it (once)",
		Long: `Create a random 256-bit token with one or more roles: admin (topics, brokers, and
everything else), produce (register producers, produce; on an ATM: deposit, withdraw,
transfer), consume (register consumers, consume, size; on an ATM: balances). --topics
limits produce and consume to those topics. Only the token's SHA-256 is stored; running
processes see a new token within a second.`,
		Example: "  quorumq token create --tokens certs/tokens.json --role produce --topics orders,payments",
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := secure.AddToken(path, roles, topics, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&path, "tokens", "certs/tokens.json", "the tokens file the servers read (--tokens)")
	f.StringSliceVar(&roles, "role", nil, "role(s): "+strings.Join(secure.Roles, ", ")+" (required)")
	f.StringSliceVar(&topics, "topics", nil, "only these topics (default: every topic)")
	f.StringVar(&name, "name", "", "a label kept next to the hash, to tell tokens apart")
	_ = create.MarkFlagRequired("role")
	cmd.AddCommand(create)
	return cmd
}
