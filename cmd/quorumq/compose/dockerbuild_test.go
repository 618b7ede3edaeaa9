package compose

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
)

// nonroot is the uid and gid of distroless's "nonroot" user, which the image runs as.
const nonroot = 65532

// builtImage is what running the Dockerfile's build stage left behind, seen through
// the final stage's COPY --from instructions.
type builtImage struct {
	root    string            // the directory standing in for the build stage's filesystem root
	files   map[string]string // final-stage path → host path of what the final stage copies there
	version string            // the build stage's VERSION argument
	took    time.Duration
}

var (
	imageOnce sync.Once
	image     builtImage
	imageErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if image.root != "" {
		_ = os.RemoveAll(image.root)
	}
	os.Exit(code)
}

// buildImage runs the Dockerfile's build stage once per test binary, the way `docker
// build` would but on this machine: its COPYs from the build context (respecting
// .dockerignore) into a temporary root, its RUN steps with sh -c there.
func buildImage(t *testing.T) builtImage {
	t.Helper()
	imageOnce.Do(func() { image, imageErr = runBuild() })
	if imageErr != nil {
		t.Fatalf("running the Dockerfile's build stage: %v", imageErr)
	}
	return image
}

// moduleRoot is the checkout: the Docker build context.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := consulagent.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func loadDockerfile(t *testing.T) (build, final stage) {
	t.Helper()
	build, final, err := readDockerfile(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return build, final
}

func readDockerfile(ctxDir string) (build, final stage, err error) {
	b, err := os.ReadFile(filepath.Join(ctxDir, "Dockerfile"))
	if err != nil {
		return build, final, err
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		return build, final, err
	}
	if len(stages) != 2 {
		return build, final, fmt.Errorf("Dockerfile has %d stages, want 2 (build, then the runtime image)", len(stages))
	}
	return stages[0], stages[1], nil
}

// runBuild reports failures as errors, not t.Fatal: it runs inside a sync.Once whose
// result other tests share.
func runBuild() (builtImage, error) {
	began := time.Now()
	ctxDir, err := consulagent.ModuleRoot()
	if err != nil {
		return builtImage{}, err
	}
	build, final, err := readDockerfile(ctxDir)
	if err != nil {
		return builtImage{}, err
	}
	ignore, err := os.ReadFile(filepath.Join(ctxDir, ".dockerignore"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return builtImage{}, err
	}
	root, err := os.MkdirTemp("", "quorumq-dockerbuild-")
	if err != nil {
		return builtImage{}, err
	}
	img := builtImage{root: root, files: map[string]string{}}
	// Everything below runs as nonroot too: the path to the binary must be traversable.
	if err := os.Chmod(root, 0o755); err != nil {
		return img, err
	}
	st := stageRun{root: root, workdir: "/", ctxDir: ctxDir, ignore: parseDockerignore(string(ignore)), env: buildEnv()}
	for _, in := range build.Instrs {
		if err := st.do(in); err != nil {
			return img, fmt.Errorf("%s %s: %w", in.Cmd, in.Raw, err)
		}
	}
	img.version = st.env["VERSION"]
	for _, in := range final.find("COPY") {
		if in.Flags["from"] != build.Name || len(in.Args) != 2 {
			return img, fmt.Errorf("final stage: COPY %s: want one source copied --from=%s", in.Raw, build.Name)
		}
		img.files[in.Args[1]] = filepath.Join(root, filepath.FromSlash(in.Args[0]))
	}
	img.took = time.Since(began)
	return img, nil
}

// stageRun is the state of a build stage being run: working directory and environment.
type stageRun struct {
	root    string // host directory standing in for the stage's /
	workdir string // in the stage's terms
	ctxDir  string
	ignore  ignoreRules
	env     map[string]string
}

// absPath catches a RUN that would write outside the stage's root on this machine:
// tokens starting with / (a URL's // is preceded by a colon, not a space).
var absPath = regexp.MustCompile(`(^|[\s=])/`)

func (s *stageRun) host(p string) string {
	if !path.IsAbs(p) {
		p = path.Join(s.workdir, p)
	}
	return filepath.Join(s.root, filepath.FromSlash(p))
}

func (s *stageRun) do(in instruction) error {
	switch in.Cmd {
	case "WORKDIR":
		s.workdir = path.Join(s.workdir, in.Args[0])
		return os.MkdirAll(s.host(s.workdir), 0o755)
	case "ARG", "ENV":
		for _, a := range in.Args {
			name, value, ok := strings.Cut(a, "=")
			if !ok && in.Cmd == "ENV" {
				return errors.New("only the ENV KEY=value form is supported here")
			}
			s.env[name] = value
		}
		return nil
	case "COPY":
		if len(in.Flags) > 0 || len(in.Args) < 2 {
			return errors.New("only COPY SRC... DST from the build context is supported in the build stage")
		}
		return s.copy(in.Args[:len(in.Args)-1], in.Args[len(in.Args)-1])
	case "RUN":
		if in.Exec {
			return errors.New("only the shell form of RUN is supported")
		}
		if absPath.MatchString(in.Raw) {
			return errors.New("absolute paths in a RUN step cannot be run outside a container; use paths relative to WORKDIR")
		}
		cmd := exec.Command("sh", "-c", in.Raw)
		cmd.Dir = s.host(s.workdir)
		for k, v := range s.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	}
	return fmt.Errorf("%s is not supported in the build stage here", in.Cmd)
}

// buildEnv is this machine's environment minus what would make the build differ from
// the golang image's: the image sets no GOFLAGS (here -buildvcs=false is common) and
// a parent make's jobserver must not leak into the stage's make. GOTOOLCHAIN=local as
// in the golang image. The caches stay, so that the build reuses this machine's.
func buildEnv() map[string]string {
	drop := []string{"GOFLAGS", "CGO_ENABLED", "GOOS", "GOARCH", "GOTOOLCHAIN", "VERSION",
		"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if !slices.Contains(drop, k) {
			env[k] = v
		}
	}
	env["GOTOOLCHAIN"] = "local"
	return env
}

// copy does COPY srcs... dst: a directory source copies its contents, a file source
// itself; both filtered by .dockerignore as the build context is.
func (s *stageRun) copy(srcs []string, dst string) error {
	dstDir := strings.HasSuffix(dst, "/") || len(srcs) > 1 || dst == "."
	to := s.host(dst)
	for _, src := range srcs {
		rel := path.Clean(src)
		if strings.ContainsAny(rel, "*?[") || strings.HasPrefix(rel, "..") || path.IsAbs(rel) {
			return fmt.Errorf("source %s: only plain paths inside the context are supported", src)
		}
		if rel != "." && s.ignore.excluded(rel) {
			return fmt.Errorf("source %s is excluded by .dockerignore", src)
		}
		from := filepath.Join(s.ctxDir, filepath.FromSlash(rel))
		fi, err := os.Stat(from)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := s.copyTree(from, rel, to); err != nil {
				return err
			}
			continue
		}
		target := to
		if dstDir {
			target = filepath.Join(to, filepath.Base(from))
		}
		if err := copyFile(from, target, fi.Mode()); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the context directory from (rel to the context root) into to.
func (s *stageRun) copyTree(from, rel, to string) error {
	walkIgnored := s.ignore.hasExceptions()
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Others edit the checkout while tests run: a file gone since the listing
			// is not an error (Docker would have sent a snapshot without it).
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		r, _ := filepath.Rel(from, p)
		ctxRel := path.Join(rel, filepath.ToSlash(r))
		if r != "." && s.ignore.excluded(ctxRel) {
			if d.IsDir() && !walkIgnored {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(to, r)
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target, info.Mode())
		}
		return nil // sockets and the like are not part of a build
	})
}

func copyFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// asNonroot makes cmd run as the image's user, with the distroless image's environment
// instead of the test's (no QUORUMQ_* variables leak in).
func asNonroot(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/home/nonroot"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// volumeDir is a fresh directory set up as the image's /data: the mode the build stage
// gave it, owned by nonroot (COPY --chown), reachable by nonroot from /.
func volumeDir(t *testing.T, img builtImage) string {
	t.Helper()
	src, err := os.Stat(img.files["/data"])
	if err != nil {
		t.Fatalf("the final stage's /data: %v", err)
	}
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(parent, "data")
	if err := os.Mkdir(dir, src.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nonroot, nonroot); err != nil {
		t.Fatal(err)
	}
	return dir
}
