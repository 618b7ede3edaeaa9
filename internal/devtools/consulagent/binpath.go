package consulagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BinEnv names the environment variable that overrides where the consul binary is.
const BinEnv = "QUORUMQ_CONSUL_BIN"

// BinPath finds the consul binary: $QUORUMQ_CONSUL_BIN, else <module root>/bin/consul
// (module root: the nearest directory above the working directory holding go.mod), else
// bin/consul next to the running executable's directory, else consul on $PATH.
func BinPath() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("consul: %s=%s is not an executable file (run consul/install.sh)", BinEnv, p)
	}
	var candidates []string
	if root, err := ModuleRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "bin", "consul"))
	}
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "bin", "consul"))
	}
	for _, c := range candidates {
		if isExecutable(c) {
			return filepath.Clean(c), nil
		}
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("consul: binary not found (looked at $%s, %v and $PATH); run consul/install.sh", BinEnv, candidates)
}

// EnsureBin returns BinPath, first running <module root>/consul/install.sh when the
// binary is missing (a fresh clone builds it once; later calls find the cached build).
func EnsureBin(ctx context.Context) (string, error) {
	p, findErr := BinPath()
	if findErr == nil {
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", errors.Join(findErr, err)
	}
	script := filepath.Join(root, "consul", "install.sh")
	if _, err := os.Stat(script); err != nil {
		return "", errors.Join(findErr, fmt.Errorf("consul: no install script: %w", err))
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("consul: %s failed: %w", script, err)
	}
	return BinPath()
}

// ModuleRoot walks up from the working directory (a test runs in its package's folder)
// to the directory holding go.mod: the checkout that holds bin/ and the install scripts.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("consul: no go.mod above the working directory")
		}
		dir = parent
	}
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
