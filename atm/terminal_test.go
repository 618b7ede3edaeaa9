package atm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/term"

	"github.com/quorumq/quorumq/atm/bank"
)

func runScript(t *testing.T, a *ATM, script string) []string {
	t.Helper()
	var out strings.Builder
	term := &Terminal{atm: a, in: plainSource(strings.NewReader(script)), out: &out}
	if err := term.Run(context.Background()); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
}

func TestTerminalScript(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	got := runScript(t, a, `deposit alice 12.5
deposit bob 3
# a comment, then a blank line

transfer alice bob 2.25
withdraw bob 0.25
balance alice
BALANCE bob
accounts
status
quit
balance alice
`)
	want := []string{
		"alice 12.50",
		"bob 3.00",
		"alice 10.25 bob 5.25",
		"bob 5.00",
		"alice 10.25",
		"bob 5.00",
		"alice 10.25",
		"bob 5.00",
		"accounts=2 total=15.25",
		"id=atm1 state=leader leader=atm1 applied=4 members=atm1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTerminalBadInput: every bad line answers one `error:` line and changes nothing.
func TestTerminalBadInput(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	runScript(t, a, "deposit alice 10\ndeposit bob 5\ndeposit rich 92233720368547758.07\n")
	before := a.bank.Accounts()
	bad := []struct{ line, want string }{
		{"deposit alice abc", `error: amount "abc" is not a decimal`},
		{"deposit alice 12abc", `error: amount "12abc" is not a decimal`},
		{"deposit alice -5", `error: amount "-5" is negative`},
		{"withdraw alice -0.01", `error: amount "-0.01" is negative`},
		{"deposit alice 1.234", `error: amount "1.234" has more than two decimal places`},
		{"deposit alice 99999999999999999999", `error: amount "99999999999999999999" is too large`},
		{"deposit alice 92233720368547758.07", "error: balance would overflow: alice"},
		{"transfer alice bob 0", `error: amount "0" must be greater than zero`},
		{"transfer alice bob 1e3", `error: amount "1e3" is not a decimal`},
		{"withdraw alice 10.01", "error: insufficient funds: alice has 10.00, needs 10.01"},
		{"transfer bob alice 5.01", "error: insufficient funds: bob has 5.00, needs 5.01"},
		{"withdraw carol 1", "error: unknown account: carol"},
		{"transfer alice rich 0.01", "error: balance would overflow: rich"}, // the receiver, not the sender
		{"transfer carol alice 1", "error: unknown account: carol"},
		{"balance carol", "error: unknown account: carol"},
		{"transfer alice alice 1", "error: cannot transfer to the same account"},
		{"fly alice", `error: unknown command "fly" (try help)`},
		{"deposit alice", "error: deposit needs AMOUNT; usage: deposit NAME AMOUNT"},
		{"transfer", "error: transfer needs FROM TO AMOUNT"},
		{"balance", "error: balance needs NAME"},
		{"balance alice bob", "error: too many arguments; usage: balance NAME"},
	}
	for _, b := range bad {
		got := runScript(t, a, b.line+"\n")
		if len(got) != 1 || !strings.HasPrefix(got[0], b.want) {
			t.Errorf("%q answered %q, want one line starting %q", b.line, got, b.want)
		}
	}
	after := a.bank.Accounts()
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("bad input changed state: %v -> %v", before, after)
	}
}

func TestTerminalAsksForMissingArguments(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	answers := []string{"alice", "7.5"}
	var prompts []string
	lines := []string{"deposit", "deposit bob"}
	src := lineSource{
		read: func() (string, error) {
			if len(lines) == 0 {
				return "", io.EOF
			}
			l := lines[0]
			lines = lines[1:]
			return l, nil
		},
		ask: func(p string) (string, error) {
			prompts = append(prompts, p)
			if len(answers) == 0 {
				return "", errors.New("no more answers")
			}
			ans := answers[0]
			answers = answers[1:]
			return ans, nil
		},
	}
	var out strings.Builder
	if err := (&Terminal{atm: a, in: src, out: &out}).Run(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	want := "alice 7.50\nerror: cancelled\n"
	if out.String() != want || strings.Join(prompts, "|") != "name: |amount: |amount: " {
		t.Fatalf("output %q prompts %q", out.String(), prompts)
	}
}

// TestTerminalLongLine: a line over 64 KiB is refused with one error line and reading
// goes on, including a last line without a newline.
func TestTerminalLongLine(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	long := "deposit alice " + strings.Repeat("1", 70<<10)
	got := runScript(t, a, long+"\ndeposit alice 1\n"+long+"\r\n"+"balance alice")
	want := []string{"error: line longer than 64 KiB ignored", "alice 1.00", "error: line longer than 64 KiB ignored", "alice 1.00"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output %q, want %q", got, want)
	}
}

// TestTerminalPastedLinesDoNotPrompt: on a tty, a bare command that was pasted gets the
// usage error (the next pasted lines are commands, not answers); typed, it prompts.
func TestTerminalPastedLinesDoNotPrompt(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	const pasteStart, pasteEnd = "\x1b[200~", "\x1b[201~"
	input := pasteStart + "deposit alice 5\rwithdraw\rbalance alice\r" + pasteEnd +
		"withdraw\ralice\r2\r"
	var out strings.Builder
	tty := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{strings.NewReader(input), &out}, "atm1> ")
	src := ttySource(tty, "atm1> ")
	if err := (&Terminal{atm: a, in: src, out: tty}).Run(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	var answers []string // the output without echoed input lines (prompt first)
	for _, l := range strings.Split(out.String(), "\r\n") {
		echo := strings.Contains(l, "atm1> ") || strings.HasPrefix(l, "name: ") || strings.HasPrefix(l, "amount: ")
		if !echo {
			answers = append(answers, l)
		}
	}
	want := []string{"alice 5.00", "error: withdraw needs NAME AMOUNT; usage: withdraw NAME AMOUNT", "alice 5.00", "alice 3.00"}
	if strings.Join(answers, "|") != strings.Join(want, "|") {
		t.Fatalf("answers %q, want %q; raw output %q", answers, want, out.String())
	}
}

// TestTerminalSaysOutcome: a failed write tells whether it happened; one whose outcome
// is unknown is retried once under the same idempotency key, so when the group comes
// back it has been applied once, not once per attempt.
func TestTerminalSaysOutcome(t *testing.T) {
	a, node := newLocalATM(t, 300*time.Millisecond)
	if got := runScript(t, a, "withdraw nobody 1\n"); len(got) != 1 || got[0] != "error: unknown account: nobody (not applied)" {
		t.Fatalf("refusal printed %q", got)
	}
	node.set(func(n *localNode) { n.stall = true })
	got := runScript(t, a, "deposit alice 5\n")
	if len(got) != 1 || !strings.HasPrefix(got[0], "error: no quorum") || !strings.HasSuffix(got[0], "(outcome unknown: it may still be applied)") {
		t.Fatalf("deposit without commit printed %q", got)
	}
	batches := map[string]bool{} // the terminal's two attempts are two batches
	for _, cmd := range node.stalled {
		b, err := bank.DecodeBatch(cmd)
		if err != nil {
			t.Fatal(err)
		}
		batches[fmt.Sprint(b.Session, b.Seq)] = true
	}
	if len(batches) != 2 {
		t.Fatalf("%d batches stalled, want 2 (the deposit and its retry)", len(batches))
	}
	node.resume()
	if bal, _ := a.bank.Balance("alice"); bal != 500 {
		t.Fatalf("alice=%d after the stalled attempts committed, want 500 (once)", bal)
	}
}
