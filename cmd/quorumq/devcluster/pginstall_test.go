package devcluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Fakes of what internal/devtools/pgserver/install.sh (run by `make dev` before the cluster starts)
// calls to install PostgreSQL; each appends what it was asked to $FAKE_LOG. sudo drops
// DEBIAN_FRONTEND as the real one's env_reset does.
var fakeInstallTools = map[string]string{
	"apt-get": `echo "apt-get $* DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-}" >>"$FAKE_LOG"
if [[ "$1" == install && -z "$FAKE_APT_INSTALLS_NOTHING" ]]; then
  mkdir -p "$QUORUMQ_PG_LIB/16/bin"
  touch "$QUORUMQ_PG_LIB/16/bin/initdb" "$QUORUMQ_PG_LIB/16/bin/postgres"
  chmod +x "$QUORUMQ_PG_LIB/16/bin/initdb" "$QUORUMQ_PG_LIB/16/bin/postgres"
fi`,
	"sudo":      `echo sudo >>"$FAKE_LOG"; exec env -u DEBIAN_FRONTEND "$@"`,
	"systemctl": `echo "systemctl $*" >>"$FAKE_LOG"`,
	"id":        `echo "$FAKE_UID"`,
}

func TestPostgresInstallScript(t *testing.T) {
	script, err := filepath.Abs("../../../internal/devtools/pgserver/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	installs := []string{"apt-get update -qq DEBIAN_FRONTEND=",
		"apt-get install -y -qq postgresql DEBIAN_FRONTEND=noninteractive",
		"systemctl disable --now postgresql"}
	for _, c := range []struct {
		name     string
		bins     []string // made executable under the lib dir, e.g. "15/bin/initdb"
		pgBin    []string // made executable in a directory that QUORUMQ_PG_BIN names
		uid      string
		missing  []string // fake tools left out
		env      []string
		wantErr  string // in stderr; "" for success
		wantLog  []string
		wantBins bool // initdb and postgres exist afterwards
	}{
		{name: "installed", bins: []string{"15/bin/initdb", "15/bin/postgres"}, uid: "0", wantBins: true},
		{name: "client only, as root", bins: []string{"15/bin/pg_ctl"}, uid: "0", wantLog: installs, wantBins: true},
		{name: "absent, with sudo", uid: "1000", wantBins: true,
			wantLog: []string{"sudo", installs[0], "sudo", installs[1], "sudo", installs[2]}},
		{name: "absent, no sudo", uid: "1000", missing: []string{"sudo"}, wantErr: "needs root or sudo"},
		{name: "absent, no apt-get", uid: "0", missing: []string{"apt-get"}, wantErr: "no apt-get"},
		{name: "apt-get installs nothing", uid: "0", env: []string{"FAKE_APT_INSTALLS_NOTHING=1"},
			wantLog: installs, wantErr: "has no initdb and postgres"},
		{name: "QUORUMQ_PG_BIN holds them", pgBin: []string{"initdb", "postgres"}, uid: "0"},
		{name: "QUORUMQ_PG_BIN holds only initdb", pgBin: []string{"initdb"}, uid: "0",
			wantErr: "holds no initdb and postgres"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			lib, pathDir, log := filepath.Join(dir, "lib"), filepath.Join(dir, "path"), filepath.Join(dir, "log")
			files := map[string]string{}
			for _, b := range c.bins {
				files[filepath.Join(lib, b)] = ""
			}
			for _, b := range c.pgBin {
				files[filepath.Join(dir, "pgbin", b)] = ""
			}
			for name, body := range fakeInstallTools {
				files[filepath.Join(pathDir, name)] = "#!/usr/bin/env bash\n" + body + "\n"
			}
			for _, m := range c.missing {
				delete(files, filepath.Join(pathDir, m))
			}
			for p, body := range files {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, tool := range []string{"bash", "env", "mkdir", "touch", "chmod"} {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(p, filepath.Join(pathDir, tool)); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", script)
			cmd.Env = append([]string{"PATH=" + pathDir, "QUORUMQ_PG_LIB=" + lib, "FAKE_LOG=" + log,
				"FAKE_UID=" + c.uid}, c.env...)
			if c.pgBin != nil {
				cmd.Env = append(cmd.Env, "QUORUMQ_PG_BIN="+filepath.Join(dir, "pgbin"))
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if c.wantErr == "" && err != nil {
				t.Fatalf("install.sh: %v\n%s", err, stderr.String())
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(stderr.String(), c.wantErr)) {
				t.Fatalf("install.sh: %v, want a failure saying %q\n%s", err, c.wantErr, stderr.String())
			}
			logged, _ := os.ReadFile(log)
			if got, want := strings.TrimSpace(string(logged)), strings.Join(c.wantLog, "\n"); got != want {
				t.Errorf("commands run:\n%s\nwant:\n%s", got, want)
			}
			_, errInitdb := os.Stat(filepath.Join(lib, "16", "bin", "initdb"))
			_, errOld := os.Stat(filepath.Join(lib, "15", "bin", "initdb"))
			if got := errInitdb == nil || errOld == nil; got != c.wantBins {
				t.Errorf("initdb under %s: %v, want %v", lib, got, c.wantBins)
			}
		})
	}
}
