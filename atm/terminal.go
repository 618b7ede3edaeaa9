package atm

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"

	"github.com/quorumq/quorumq/atm/bank"
)

// command is one terminal command: its argument names (asked for when missing on a
// terminal) and what it does. run returns the answer lines; key is the idempotency key
// of a write (write is set), which the reads ignore.
type command struct {
	name  string
	args  []string
	help  string
	write bool
	run   func(ctx context.Context, a *ATM, key string, args []string) ([]string, error)
}

var commands = []command{
	{"deposit", []string{"NAME", "AMOUNT"}, "add money to an account (a new name opens it)", true, runMoney((*ATM).Deposit)},
	{"withdraw", []string{"NAME", "AMOUNT"}, "take money out of an account", true, runMoney((*ATM).Withdraw)},
	{"balance", []string{"NAME"}, "show an account's balance", false, runBalance},
	{"transfer", []string{"FROM", "TO", "AMOUNT"}, "move money between two accounts (a new TO opens it)", true, runTransfer},
	{"accounts", nil, "list every account and the total", false, runAccounts},
	{"status", nil, "show this ATM's view of the group (leader, members)", false, runStatus},
	{"help", nil, "show this help", false, nil},
	{"quit", nil, "stop this ATM (so does Ctrl-D on a terminal)", false, nil},
}

func lookup(name string) (command, bool) {
	if name == "exit" {
		name = "quit"
	}
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

func helpLines() []string {
	var out []string
	for _, c := range commands {
		usage := strings.TrimSpace(c.name + " " + strings.Join(c.args, " "))
		out = append(out, fmt.Sprintf("  %-28s %s", usage, c.help))
	}
	return append(out, "  amounts are decimals with at most two places: 12, 12.5, 12.50")
}

func line(name string, cents int64) string { return name + " " + bank.FormatAmount(cents) }

// runMoney runs deposit or withdraw, which differ only in the ATM operation.
func runMoney(op moneyOp) func(ctx context.Context, a *ATM, key string, args []string) ([]string, error) {
	return func(ctx context.Context, a *ATM, key string, args []string) ([]string, error) {
		cents, err := bank.ParseAmount(args[1])
		if err != nil {
			return nil, err
		}
		bal, err := op(a, ctx, key, args[0], cents)
		if err != nil {
			return nil, err
		}
		return []string{line(args[0], bal)}, nil
	}
}

func runBalance(ctx context.Context, a *ATM, _ string, args []string) ([]string, error) {
	bal, err := a.Balance(ctx, args[0])
	if err != nil {
		return nil, err
	}
	return []string{line(args[0], bal)}, nil
}

func runTransfer(ctx context.Context, a *ATM, key string, args []string) ([]string, error) {
	cents, err := bank.ParseAmount(args[2])
	if err != nil {
		return nil, err
	}
	from, to, err := a.Transfer(ctx, key, args[0], args[1], cents)
	if err != nil {
		return nil, err
	}
	return []string{line(args[0], from) + " " + line(args[1], to)}, nil
}

func runAccounts(ctx context.Context, a *ATM, _ string, _ []string) ([]string, error) {
	accounts, err := a.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	var total int64
	for _, acc := range accounts {
		out = append(out, line(acc.Name, acc.Cents))
		total += acc.Cents
	}
	return append(out, fmt.Sprintf("accounts=%d total=%s", len(accounts), bank.FormatAmount(total))), nil
}

func runStatus(ctx context.Context, a *ATM, _ string, _ []string) ([]string, error) {
	return []string{a.Status(ctx).String()}, nil
}

// lineSource is where the terminal reads from. ask is nil when there is nobody to ask
// (stdin is not a terminal): then a missing argument is an error, since the next input
// line is the next command.
type lineSource struct {
	read func() (string, error)
	ask  func(prompt string) (string, error)
}

// interactive reports whether a person types the input (stdin is a terminal).
func (s lineSource) interactive() bool { return s.ask != nil }

// maxLine bounds one input line; a longer one is refused whole and reading goes on.
const maxLine = 64 << 10

var (
	errLineTooLong = fmt.Errorf("line longer than %d KiB ignored", maxLine>>10)
	// errPasted refuses to prompt for arguments of a pasted line: the next pasted lines
	// would be taken as the answers.
	errPasted = errors.New("pasted line")
)

// Terminal reads commands line by line and writes one answer (or `error: ...`) each.
type Terminal struct {
	atm     *ATM
	in      lineSource
	out     io.Writer
	keyBase string // this terminal's idempotency keys are keyBase.1, keyBase.2, ...
	keys    int
}

// newKey returns the idempotency key of one write command, unique to this run.
func (t *Terminal) newKey() string {
	if t.keyBase == "" {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux
		t.keyBase = "term-" + hex.EncodeToString(b[:])
	}
	t.keys++
	return fmt.Sprintf("%s.%d", t.keyBase, t.keys)
}

// withOutcome adds to a failed write's error whether it was applied.
func withOutcome(err error) error {
	if OutcomeOf(err) == OutcomeUnknown {
		return fmt.Errorf("%w (outcome unknown: it may still be applied)", err)
	}
	return fmt.Errorf("%w (not applied)", err)
}

// plainSource reads newline-separated commands from r (a pipe or file).
func plainSource(r io.Reader) lineSource {
	br := bufio.NewReader(r)
	return lineSource{read: func() (string, error) { return readLine(br) }}
}

// readLine returns the next line without its line ending, or errLineTooLong after
// skipping past a line over maxLine bytes, or io.EOF once the input is used up.
func readLine(br *bufio.Reader) (string, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			line = append(line, chunk...)
			tooLong = len(line) > maxLine+2 // room for \r\n
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0 && !tooLong) {
			return "", err
		}
		break // a whole line, or the last one without a newline
	}
	text := strings.TrimRight(string(line), "\r\n")
	if tooLong || len(text) > maxLine {
		return "", errLineTooLong
	}
	return text, nil
}

// ttySource reads through x/term, which gives line editing and history (up/down). With
// bracketed paste on, pasted lines are told apart from typed ones, and only a typed
// line gets prompts for its missing arguments.
func ttySource(t *term.Terminal, prompt string) lineSource {
	t.SetBracketedPasteMode(true)
	pasted := false
	return lineSource{
		read: func() (string, error) {
			line, err := t.ReadLine()
			pasted = errors.Is(err, term.ErrPasteIndicator)
			if pasted {
				err = nil
			}
			return line, err
		},
		ask: func(p string) (string, error) {
			if pasted {
				return "", errPasted
			}
			t.SetPrompt(p)
			defer t.SetPrompt(prompt)
			return t.ReadLine()
		},
	}
}

// Run executes commands until quit, end of input or ctx. It returns io.EOF at end of
// input and nil at quit or when ctx ends.
func (t *Terminal) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		text, err := t.in.read()
		if errors.Is(err, errLineTooLong) {
			fmt.Fprintln(t.out, "error:", err)
			continue
		}
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		lines, quit, err := t.exec(ctx, text)
		for _, l := range lines {
			fmt.Fprintln(t.out, l)
		}
		if err != nil {
			fmt.Fprintln(t.out, "error:", err)
		}
		if quit {
			return nil
		}
	}
	return nil
}

// exec runs one input line. Text after → is a comment: README shows each command's
// answer that way, and the block stays pasteable as it is.
func (t *Terminal) exec(ctx context.Context, text string) (lines []string, quit bool, err error) {
	text, _, _ = strings.Cut(text, "→")
	fields := strings.Fields(text)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return nil, false, nil
	}
	cmd, ok := lookup(strings.ToLower(fields[0]))
	if !ok {
		return nil, false, fmt.Errorf("unknown command %q (try help)", fields[0])
	}
	args := fields[1:]
	if len(args) > len(cmd.args) {
		return nil, false, fmt.Errorf("too many arguments; usage: %s %s", cmd.name, strings.Join(cmd.args, " "))
	}
	if args, err = t.complete(cmd, args); err != nil {
		return nil, false, err
	}
	switch cmd.name {
	case "help":
		return helpLines(), false, nil
	case "quit":
		return nil, true, nil
	}
	var key string
	if cmd.write {
		key = t.newKey()
	}
	lines, err = cmd.run(ctx, t.atm, key, args)
	if cmd.write && errors.Is(err, ErrOutcomeUnknown) {
		// Once more under the same key: applied once, whether or not the first try was.
		lines, err = cmd.run(ctx, t.atm, key, args)
	}
	if cmd.write && err != nil {
		err = withOutcome(err)
	}
	return lines, false, err
}

// complete asks for missing arguments when someone is there to answer.
func (t *Terminal) complete(cmd command, args []string) ([]string, error) {
	if len(args) == len(cmd.args) {
		return args, nil
	}
	usage := fmt.Errorf("%s needs %s; usage: %s %s", cmd.name, strings.Join(cmd.args[len(args):], " "), cmd.name, strings.Join(cmd.args, " "))
	if !t.in.interactive() {
		return nil, usage
	}
	for _, name := range cmd.args[len(args):] {
		answer, err := t.in.ask(strings.ToLower(name) + ": ")
		if errors.Is(err, errPasted) {
			return nil, usage
		}
		if err != nil {
			return nil, errors.New("cancelled")
		}
		fields := strings.Fields(answer)
		if len(fields) != 1 {
			return nil, fmt.Errorf("%s: want one word, got %q", name, answer)
		}
		args = append(args, fields[0])
	}
	return args, nil
}
