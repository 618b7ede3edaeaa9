// Package pgserver runs a private PostgreSQL server for tests and `quorumq dev`.
//
// The server is a child process of the caller (not daemonised through pg_ctl), so it dies
// with its parent: a test binary killed by its timeout or a SIGKILLed `quorumq dev` leaves
// no orphan postgres holding a port. Running as root, initdb and postgres run as the
// `postgres` user, because postgres refuses to run as root.
package pgserver

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/internal/freeport"
)

// Config says where the server keeps its data and where it listens.
type Config struct {
	// DataDir is the PostgreSQL data directory (PGDATA). It is created and initialised
	// when empty or missing, and reused as is when it already holds a cluster.
	DataDir string
	// Port on 127.0.0.1; 0 picks a free one.
	Port int
	// NoFsync turns off fsync, full-page writes and synchronous commit: fine for
	// throw-away test databases, never for data anyone keeps. Default: durable.
	NoFsync bool
	// BinDir holds initdb and postgres; empty finds the newest /usr/lib/postgresql/*/bin.
	BinDir string
	// StartTimeout bounds the wait for the server to accept connections (default 60 s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Server is a running PostgreSQL server.
type Server struct {
	cfg    Config
	port   int
	cmd    *exec.Cmd
	logf   *os.File
	exited chan struct{}
	err    error  // exit status, valid after exited is closed
	pass   string // the postgres user's password; "" for a cluster made with trust auth

	stopOnce sync.Once
	stopErr  error
}

// logName is the server's log inside the data directory (postgres' stderr).
const logName = "postgres.log"

// Start initialises cfg.DataDir if needed, starts postgres and waits until it accepts
// connections. ctx bounds only the start; Stop ends the server.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("pgserver: DataDir is required")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = FindBinDir(ctx, cfg.Logger); err != nil {
			return nil, err
		}
	}
	owner, err := serverUser()
	if err != nil {
		return nil, err
	}
	if err := prepareDir(dir, owner, cfg.Logger); err != nil {
		return nil, err
	}
	if err := initdb(ctx, cfg, owner); err != nil {
		return nil, err
	}
	waitPreviousServer(ctx, cfg)
	// A free port found by listening can be taken by someone else before postgres binds
	// it; retry a few times rather than fail a test on that race.
	attempts := 1
	if cfg.Port == 0 {
		attempts = 3
	}
	for i := 0; ; i++ {
		s, err := start(ctx, cfg, owner)
		if err == nil || i+1 >= attempts || !errors.Is(err, errAddrInUse) {
			return s, err
		}
		cfg.Logger.Warn("pgserver: port taken, retrying", "err", err)
	}
}

var errAddrInUse = errors.New("address already in use")

func start(ctx context.Context, cfg Config, owner *account) (*Server, error) {
	port := cfg.Port
	if port == 0 {
		p, err := freeport.TCP(false)
		if err != nil {
			return nil, err
		}
		port = p
	}
	logPath := filepath.Join(cfg.DataDir, logName)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pgserver: open log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := []string{
		"-D", cfg.DataDir,
		"-p", strconv.Itoa(port),
		"-k", socketDir(cfg.DataDir),
		"-c", "listen_addresses=127.0.0.1",
	}
	if cfg.NoFsync {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	} else {
		args = append(args, "-c", "fsync=on")
	}
	cmd := exec.Command(filepath.Join(cfg.BinDir, "postgres"), args...)
	cmd.Dir = cfg.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = owner.sysProcAttr()
	// SIGINT is postgres' fast shutdown: roll back open transactions, checkpoint, exit.
	// It also comes when the parent dies; its own process group keeps a terminal's Ctrl-C
	// away, so the parent decides when the database goes (after its clients).
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pgserver: start postgres: %w", err)
	}
	s := &Server{cfg: cfg, port: port, cmd: cmd, logf: logf, exited: make(chan struct{}), pass: readPassword(cfg.DataDir)}
	go func() {
		s.err = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		tail := readFrom(logPath, logStart)
		if strings.Contains(tail, "Address already in use") {
			err = fmt.Errorf("%w: port %d (%v)", errAddrInUse, port, err)
		}
		return nil, fmt.Errorf("pgserver: %w; postgres log:\n%s", err, tail)
	}
	cfg.Logger.Info("postgres ready", "addr", s.Addr(), "data_dir", cfg.DataDir, "pid", s.Pid())
	return s, nil
}

// waitReady polls with a real connection: the only proof that clients can use the server.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	db := s.open("postgres")
	defer db.Close()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited during start: %v", s.err)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) open(db string) *sql.DB {
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(s.DSN(db))))
}

// DSN is the pgdriver connection string for database db.
func (s *Server) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: s.Addr(), Path: "/" + db, RawQuery: "sslmode=disable"}
	if s.pass != "" {
		u.User = url.UserPassword("postgres", s.pass)
	}
	return u.String()
}

// PasswordFile holds the password of the postgres user (the DSN has it too), for a
// process that takes it from a file (quorumq manager --postgres-password-file).
func (s *Server) PasswordFile() string { return passwordPath(s.cfg.DataDir) }

// Addr is the server's TCP address.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Pid is the postmaster's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// DataDir is the server's data directory (absolute).
func (s *Server) DataDir() string { return s.cfg.DataDir }

// Done is closed when the server process has exited, for whatever reason.
func (s *Server) Done() <-chan struct{} { return s.exited }

// CreateDatabase creates database name unless it exists already.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	db := s.open("postgres")
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pgserver: look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil {
		var pgErr pgdriver.Error
		if errors.As(err, &pgErr) && pgErr.Field('C') == "42P04" { // created concurrently
			return nil
		}
		return fmt.Errorf("pgserver: create database %q: %w", name, err)
	}
	return nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Stop shuts the server down (fast shutdown: open transactions roll back, data already
// committed stays) and waits for it to exit. Safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	select {
	case <-s.exited:
		return nil // already gone; nothing left to stop
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pgserver: signal postgres: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("pgserver: postgres did not stop within 60s; killed")
	}
	var exit *exec.ExitError
	if s.err != nil && !errors.As(s.err, &exit) {
		return s.err
	}
	if exit != nil && exit.ExitCode() != 0 {
		return fmt.Errorf("pgserver: postgres exited with %v", s.err)
	}
	s.cfg.Logger.Info("postgres stopped", "addr", s.Addr())
	return nil
}

func initdb(ctx context.Context, cfg Config, owner *account) error {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "PG_VERSION")); err == nil {
		return nil // an existing cluster: reuse it
	}
	// Password authentication (scram-sha-256) even on loopback: another local user must
	// not reach the managers' metadata. The password is made here, once.
	pwfile, err := writePassword(cfg.DataDir, owner)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, "initdb"),
		"-D", cfg.DataDir, "-U", "postgres", "-A", "scram-sha-256", "--pwfile", pwfile,
		"-E", "UTF8", "--locale=C", "--no-instructions")
	if cfg.NoFsync {
		cmd.Args = append(cmd.Args, "--no-sync")
	}
	cmd.Dir = cfg.DataDir
	cmd.SysProcAttr = owner.sysProcAttr()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgserver: initdb %s: %w\n%s", cfg.DataDir, err, out)
	}
	return nil
}

// waitPreviousServer gives a server that is still shutting down on this directory (its
// parent was just killed, so it got SIGINT) a few seconds to release postmaster.pid;
// otherwise the new postgres would refuse to start. A pid file naming some unrelated
// live process is left for postgres itself to judge.
func waitPreviousServer(ctx context.Context, cfg Config) {
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return
	}
	if !running(pid) {
		return
	}
	cfg.Logger.Info("pgserver: waiting for the previous server on this directory to exit", "pid", pid)
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
}

// running reports whether pid is a live process; a zombie (an orphan nobody reaped, as
// in containers without an init) does not count.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// socketDir keeps the Unix socket (handy for psql -h DIR) next to the data unless the path
// is too long for a socket address (108 bytes); TCP is what quorumq uses anyway.
func socketDir(dataDir string) string {
	if len(dataDir)+len("/.s.PGSQL.65535.lock") < 100 {
		return dataDir
	}
	return ""
}

func readFrom(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || off > int64(len(b)) {
		return ""
	}
	b = b[off:]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
