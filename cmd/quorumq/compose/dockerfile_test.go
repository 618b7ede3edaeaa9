// Package compose checks the Dockerfile and docker-compose.yml on a machine without a
// container engine: it runs the Dockerfile's build stage as plain commands, checks the
// binary it makes as the image would run it (static, uid 65532), and starts the compose
// topology as real processes on loopback addresses.
package compose

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction after line continuations are joined.
type instruction struct {
	Cmd   string            // upper case: FROM, RUN, COPY, ...
	Flags map[string]string // leading --name=value options, e.g. from=build
	Args  []string          // exec (JSON) form as given, else the words of the shell form
	Raw   string            // the text after command and flags (what RUN hands to sh -c)
	Exec  bool              // written in exec (JSON) form
}

// stage is one FROM and the instructions under it.
type stage struct {
	Name   string // the AS name, empty if none
	Image  string
	Instrs []instruction
}

// find returns the stage's instructions with that command.
func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instrs {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile understands the subset of the syntax our Dockerfile uses: comments,
// backslash continuations, --flags, and the exec and shell forms. No parser directives
// or heredocs; an instruction it cannot read is an error rather than a guess.
func parseDockerfile(text string) ([]stage, error) {
	var stages []stage
	var logical strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		// Comment lines are dropped even inside a continuation, as Docker does.
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			logical.WriteString(strings.TrimSpace(cont) + " ")
			continue
		}
		logical.WriteString(line)
		in, err := parseInstruction(logical.String())
		logical.Reset()
		if err != nil {
			return nil, fmt.Errorf("Dockerfile line %d: %w", lineNo, err)
		}
		if in.Cmd == "FROM" {
			st := stage{Image: in.Args[0]}
			if len(in.Args) == 3 && strings.EqualFold(in.Args[1], "AS") {
				st.Name = in.Args[2]
			} else if len(in.Args) != 1 {
				return nil, fmt.Errorf("Dockerfile line %d: FROM %s: want IMAGE [AS NAME]", lineNo, in.Raw)
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			return nil, fmt.Errorf("Dockerfile line %d: %s before the first FROM", lineNo, in.Cmd)
		}
		last := &stages[len(stages)-1]
		last.Instrs = append(last.Instrs, in)
	}
	if logical.Len() > 0 {
		return nil, fmt.Errorf("Dockerfile ends inside a continuation")
	}
	return stages, sc.Err()
}

func parseInstruction(s string) (instruction, error) {
	cmd, rest, _ := strings.Cut(s, " ")
	in := instruction{Cmd: strings.ToUpper(cmd), Flags: map[string]string{}}
	rest = strings.TrimSpace(rest)
	for strings.HasPrefix(rest, "--") {
		flag, after, _ := strings.Cut(rest, " ")
		name, value, ok := strings.Cut(strings.TrimPrefix(flag, "--"), "=")
		if !ok {
			return in, fmt.Errorf("%s: flag %s without =value", in.Cmd, flag)
		}
		in.Flags[name] = value
		rest = strings.TrimSpace(after)
	}
	in.Raw = rest
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &in.Args); err != nil {
			return in, fmt.Errorf("%s: exec form %s: %v", in.Cmd, rest, err)
		}
		in.Exec = true
	} else {
		in.Args = strings.Fields(rest)
	}
	if len(in.Args) == 0 {
		return in, fmt.Errorf("%s without arguments", in.Cmd)
	}
	return in, nil
}

// ignoreRule is one .dockerignore line: a cleaned, root-anchored pattern whose path
// segments match with path.Match, "**" standing for any number of segments.
type ignoreRule struct {
	segments []string
	negate   bool
}

type ignoreRules []ignoreRule

func parseDockerignore(text string) ignoreRules {
	var rules ignoreRules
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, p
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		if line == "" {
			continue
		}
		r.segments = strings.Split(line, "/")
		rules = append(rules, r)
	}
	return rules
}

// excluded says whether rel (slash-separated, relative to the context root) stays out
// of the build context: the last rule that matches it or one of its parent directories
// decides, as in Docker.
func (rs ignoreRules) excluded(rel string) bool {
	segs := strings.Split(rel, "/")
	out := false
	for _, r := range rs {
		for n := 1; n <= len(segs); n++ {
			if matchSegments(r.segments, segs[:n]) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// hasExceptions says whether some "!" rule could bring back a file inside an excluded
// directory, so that the directory must still be walked.
func (rs ignoreRules) hasExceptions() bool {
	for _, r := range rs {
		if r.negate {
			return true
		}
	}
	return false
}

func matchSegments(pattern, name []string) bool {
	if len(pattern) == 0 {
		return len(name) == 0
	}
	if pattern[0] == "**" {
		for skip := 0; skip <= len(name); skip++ {
			if matchSegments(pattern[1:], name[skip:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, err := path.Match(pattern[0], name[0])
	return err == nil && ok && matchSegments(pattern[1:], name[1:])
}

func TestParseDockerfile(t *testing.T) {
	stages, err := parseDockerfile(`# syntax comment
FROM golang:1.26 AS build
RUN a \
    # dropped inside a continuation
    && b
COPY --from=x --chown=1:2 src /dst
FROM scratch
ENTRYPOINT ["/bin/q", "--flag"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 || stages[0].Name != "build" || stages[0].Image != "golang:1.26" || stages[1].Image != "scratch" {
		t.Fatalf("stages %+v", stages)
	}
	run, cp, ep := stages[0].Instrs[0], stages[0].Instrs[1], stages[1].Instrs[0]
	if run.Cmd != "RUN" || run.Raw != "a && b" || run.Exec {
		t.Errorf("RUN %+v", run)
	}
	if cp.Flags["from"] != "x" || cp.Flags["chown"] != "1:2" || !slices.Equal(cp.Args, []string{"src", "/dst"}) {
		t.Errorf("COPY %+v", cp)
	}
	if !ep.Exec || !slices.Equal(ep.Args, []string{"/bin/q", "--flag"}) {
		t.Errorf("ENTRYPOINT %+v", ep)
	}
	for _, bad := range []string{"RUN x", "FROM a b", "FROM a\nRUN x \\", "FROM a\nCOPY --from x y", "FROM a\nCMD [\"x\""} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}
