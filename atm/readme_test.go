package atm_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeATMBlock returns the ATM paste-in block of README.md as it is written, and the
// answers it shows after → (one per line, continuation lines included), in order.
func readmeATMBlock(t *testing.T) (block string, answers []string) {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "### Paste-in: the ATM network")
	if !ok {
		t.Fatal("README.md has no ATM paste-in section")
	}
	_, after, ok := strings.Cut(section, "Then type in any of them")
	if !ok {
		t.Fatal("README.md's ATM section lost its `Then type in any of them` block")
	}
	_, after, _ = strings.Cut(after, "```\n")
	block, _, ok = strings.Cut(after, "```\n")
	if !ok || block == "" {
		t.Fatal("README.md's ATM block is not a closed ``` block")
	}
	for _, l := range strings.Split(block, "\n") {
		if _, ans, ok := strings.Cut(l, "→"); ok {
			answers = append(answers, strings.TrimSpace(ans))
		}
	}
	return block, answers
}

// answerPattern turns a README answer into a regexp where ... matches anything.
func answerPattern(ans string) *regexp.Regexp {
	parts := strings.Split(ans, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// TestReadmeATMBlock pastes README's ATM block, byte for byte, into the stdin of a real
// `quorumq atm` of a 3-ATM network and checks every answer README shows.
func TestReadmeATMBlock(t *testing.T) {
	block, want := readmeATMBlock(t)
	if len(want) < 5 {
		t.Fatalf("README's ATM block shows only %d answers: %q", len(want), block)
	}
	atms := startATMs(t, 3)
	got := atms[0].sayN(t, strings.TrimSuffix(block, "\n"), len(want))
	for i, w := range want {
		if !answerPattern(w).MatchString(got[i]) {
			t.Errorf("answer %d: %q, README shows %q", i+1, got[i], w)
		}
	}
	if t.Failed() {
		t.Logf("block:\n%s\noutput:\n%s", block, atms[0].p.Output())
	}
}
