package pgserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// FindBinDir returns the newest /usr/lib/postgresql/<version>/bin holding initdb and
// postgres ($QUORUMQ_PG_BIN overrides). When there is none and the process runs inside a
// quorumq checkout, it runs install.sh (the Debian package) once and looks again.
func FindBinDir(ctx context.Context, logger *slog.Logger) (string, error) {
	if dir := os.Getenv("QUORUMQ_PG_BIN"); dir != "" {
		return dir, nil
	}
	if dir := newestBinDir(); dir != "" {
		return dir, nil
	}
	script := installScript()
	if script == "" {
		return "", errors.New("pgserver: PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; " +
			"install the postgresql package (internal/devtools/pgserver/install.sh) or set QUORUMQ_PG_BIN")
	}
	logger.Info("pgserver: PostgreSQL not installed; running " + script)
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pgserver: %s: %w", script, err)
	}
	if dir := newestBinDir(); dir != "" {
		return dir, nil
	}
	return "", errors.New("pgserver: install.sh ran but no /usr/lib/postgresql/*/bin/initdb appeared")
}

func newestBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var ok []string
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			ok = append(ok, d)
		}
	}
	// Versions compare as numbers: 15 is newer than 9.6.
	major := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(ok, func(i, j int) bool { return major(ok[i]) > major(ok[j]) })
	if len(ok) == 0 {
		return ""
	}
	return ok[0]
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// installScript finds internal/devtools/pgserver/install.sh by walking up from the working
// directory to this module's go.mod (tests run inside the checkout).
func installScript() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/quorumq/quorumq\n") {
			script := filepath.Join(dir, "internal", "devtools", "pgserver", "install.sh")
			if _, err := os.Stat(script); err == nil {
				return script
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// account is who runs initdb and postgres: the postgres account when we are root
// (postgres refuses root), else ourselves (nil).
type account struct{ uid, gid uint32 }

func serverUser() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgserver: running as root needs a postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &account{uid: uint32(uid), gid: uint32(gid)}, nil
}

func (u *account) sysProcAttr() *syscall.SysProcAttr {
	if u == nil {
		return &syscall.SysProcAttr{}
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid}}
}

// prepareDir creates the data directory owned by the server user; as root it also makes
// the parent directories traversable (o+x) so that the postgres user can reach it.
func prepareDir(dir string, u *account, logger *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	if u == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			logger.Info("pgserver: making directory traversable for the postgres user (o+x)", "dir", p)
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("pgserver: %w", err)
			}
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	// initdb needs to own the (empty) directory; an existing cluster is owned already.
	if err := os.Chown(dir, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	return nil
}

// passwordPath is the file next to the data directory that holds the postgres user's
// password (initdb wants an empty directory).
func passwordPath(dataDir string) string { return dataDir + ".password" }

// writePassword makes a random password for a new cluster, readable only by its
// owner (and the server user, which initdb runs as).
func writePassword(dataDir string, u *account) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	path := passwordPath(dataDir)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("pgserver: %w", err)
	}
	if u != nil {
		if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
			return "", fmt.Errorf("pgserver: %w", err)
		}
	}
	return path, nil
}

// readPassword is the password writePassword made, "" for a cluster from before it.
func readPassword(dataDir string) string {
	b, err := os.ReadFile(passwordPath(dataDir))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
