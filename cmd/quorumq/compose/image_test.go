package compose

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"go/version"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
)

// TestDockerfileShape checks the Dockerfile's design without running it: the build stage
// builds through the Makefile with a Go new enough for go.mod; the image is distroless
// "static" (no libc, so the binary must be static) running as nonroot.
func TestDockerfileShape(t *testing.T) {
	build, final := loadDockerfile(t)

	if build.Name == "" {
		t.Errorf("build stage %s has no AS name for the final stage to copy from", build.Image)
	}
	goTag, ok := strings.CutPrefix(build.Image, "golang:")
	if !ok {
		t.Fatalf("build stage image %s: want golang:<version>-bookworm", build.Image)
	}
	imageGo := "go" + strings.Split(goTag, "-")[0]
	modGo := goModVersion(t)
	// A tag without a patch (golang:1.26) is the newest patch of that minor.
	if version.Lang(imageGo) == imageGo && version.Compare(imageGo, version.Lang(modGo)) < 0 ||
		version.Lang(imageGo) != imageGo && version.Compare(imageGo, modGo) < 0 {
		t.Errorf("build stage image %s is older than go.mod's go %s (GOTOOLCHAIN=local cannot upgrade)", build.Image, modGo)
	}
	makeBuild := regexp.MustCompile(`(^|[;&|]\s*)make\s+([^;&|]*\s)?build(\s|$)`)
	var viaMake bool
	for _, in := range build.find("RUN") {
		viaMake = viaMake || makeBuild.MatchString(in.Raw)
		if strings.Contains(in.Raw, "go build") {
			t.Errorf("RUN %s: build with `make build`, not go build, so the image and make cannot drift", in.Raw)
		}
	}
	if !viaMake {
		t.Errorf("no RUN in the build stage runs the Makefile's build target (make build)")
	}

	if !strings.HasPrefix(final.Image, "gcr.io/distroless/static") || !strings.HasSuffix(final.Image, ":nonroot") {
		t.Errorf("final image %s: want gcr.io/distroless/static-*:nonroot", final.Image)
	}
	if u := final.find("USER"); len(u) != 1 || !isNonroot(u[0].Args[0]) {
		t.Errorf("final stage USER: want one USER nonroot (uid %d), got %+v", nonroot, u)
	}
	ep := final.find("ENTRYPOINT")
	if len(ep) != 1 || !ep[0].Exec || len(ep[0].Args) != 1 {
		t.Fatalf("final stage: want one ENTRYPOINT [\"/path/to/quorumq\"] (exec form, no shell in distroless), got %+v", ep)
	}
	copies := map[string]instruction{}
	for _, in := range final.find("COPY") {
		copies[in.Args[len(in.Args)-1]] = in
	}
	if in, ok := copies[ep[0].Args[0]]; !ok || in.Flags["from"] != build.Name {
		t.Errorf("ENTRYPOINT %s is not copied from the build stage", ep[0].Args[0])
	}
	volumes := final.find("VOLUME")
	if len(volumes) != 1 || strings.Join(volumes[0].Args, " ") != "/data" {
		t.Errorf("final stage: want VOLUME [\"/data\"], got %+v", volumes)
	}
	if in, ok := copies["/data"]; !ok || !isNonroot(strings.Split(in.Flags["chown"], ":")[0]) {
		t.Errorf("final stage: /data must be copied from the build stage with --chown=%d:%d (a fresh volume takes its owner from the image)", nonroot, nonroot)
	}
}

func isNonroot(user string) bool {
	u := strings.Split(user, ":")[0]
	return u == "nonroot" || u == fmt.Sprint(nonroot)
}

func goModVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	return "go" + string(m[1])
}

// TestImageBinary runs the build stage and checks the binary the image would get: a
// static ELF built with the Makefile's flags, which runs as nonroot.
func TestImageBinary(t *testing.T) {
	img := buildImage(t)
	t.Logf("build stage ran in %v", img.took.Round(100*time.Millisecond))
	_, final := loadDockerfile(t)
	bin := img.files[final.find("ENTRYPOINT")[0].Args[0]]

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the entrypoint binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: dynamically linked, but distroless/static has no libc or loader", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary imports shared libraries %v", libs)
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	// -trimpath keeps -ldflags out of the build info: its parts are checked by effect.
	for k, v := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("binary built with %s=%q, want %q as `make build` does", k, settings[k], v)
		}
	}
	ldflags := strings.Fields(makefileLDFLAGS(t))
	if slices.Contains(ldflags, "-s") && f.Section(".symtab") != nil {
		t.Errorf("binary has a symbol table; the Makefile links with -s")
	}
	if slices.Contains(ldflags, "-w") && f.Section(".debug_info") != nil {
		t.Errorf("binary has DWARF; the Makefile links with -w")
	}
	if !slices.Contains(ldflags, "main.version=$(VERSION)") {
		t.Errorf("the Makefile's LDFLAGS %v do not set main.version=$(VERSION), which `quorumq version` is checked against", ldflags)
	}

	out, err := asNonroot(exec.Command(bin, "version")).CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "quorumq "+img.version; err != nil || got != want {
		t.Errorf("quorumq version as uid %d: %v, printed %q, want %q", nonroot, err, got, want)
	}
}

// makefileLDFLAGS is the Makefile's LDFLAGS as written.
func makefileLDFLAGS(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("Makefile has no LDFLAGS")
	}
	return strings.TrimSpace(string(m[1]))
}

// TestImageRunsAsNonroot runs a broker and a manager from the image's binary as the
// image does: uid and gid 65532, --data-dir in a directory set up like the image's
// /data. Each must serve /healthz, write its files there as nonroot, and exit cleanly
// on SIGTERM (what `docker stop` sends).
func TestImageRunsAsNonroot(t *testing.T) {
	img := buildImage(t)
	_, final := loadDockerfile(t)
	bin := img.files[final.find("ENTRYPOINT")[0].Args[0]]
	for _, tc := range []struct {
		name string
		args func(t *testing.T, raft string) []string
	}{
		{"broker", func(*testing.T, string) []string { return []string{"broker", "--id", "b1"} }},
		{"manager", func(t *testing.T, raft string) []string {
			return []string{"manager", "--id", "m1", "--bootstrap-expect", "1", "--peers", "m1=" + raft,
				"--postgres", pgserver.StartT(t).DSN("quorumq_m1")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raft, httpAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
			// Plain: this is about the user and the data dir, not TLS (the
			// topology test runs the compose commands secured).
			runAsNonroot(t, bin, volumeDir(t, img), httpAddr,
				append(tc.args(t, raft), "--raft", raft, "--http", httpAddr, "--insecure"))
		})
	}
}

func runAsNonroot(t *testing.T, bin, data, httpAddr string, args []string) {
	var out strings.Builder
	cmd := asNonroot(exec.Command(bin, append(args, "--data-dir", data)...))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s output:\n%s", args[0], out.String())
		}
	})

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if ids := fmt.Sprintf("%d\t%d\t%d\t%d", nonroot, nonroot, nonroot, nonroot); !strings.Contains(string(status), "Uid:\t"+ids) ||
		!strings.Contains(string(status), "Gid:\t"+ids) {
		t.Fatalf("%s does not run as %d:%d:\n%s", args[0], nonroot, nonroot, status)
	}
	waitHealthy(t, "http://"+httpAddr+"/healthz", exited)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", args[0], err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of SIGTERM", args[0])
	}

	var files int
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != nonroot || st.Gid != nonroot {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, nonroot, nonroot)
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Errorf("%s wrote nothing in its --data-dir %s", args[0], data)
	}
}

// waitHealthy polls url until it answers 200, failing when the process exits first.
func waitHealthy(t *testing.T, url string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("exited (%v) before %s answered", err, url)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within 30s (last error: %v)", url, err)
		}
	}
}
