package atm_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestThreeATMsThroughStdin drives three real `quorumq atm` processes through their
// stdin: writes on different ATMs, SIGKILL of the leader, work on the survivors, and the
// killed ATM restarting from its data dir with the same balances.
func TestThreeATMsThroughStdin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	atms := startATMs(t, 3)
	a1, a2, a3 := atms[0], atms[1], atms[2]

	a1.expect(t, "deposit alice 100", "alice 100.00")
	a2.expect(t, "deposit bob 50.5", "bob 50.50")
	a3.expect(t, "transfer alice bob 25.25", "alice 74.75 bob 75.75")
	// Linearizable reads: every ATM sees the writes made on the others.
	for _, a := range atms {
		a.expect(t, "balance alice", "alice 74.75")
		a.expect(t, "balance bob", "bob 75.75")
	}
	if st := a2.say(t, "status"); !strings.Contains(st, "leader=atm") || !strings.Contains(st, "members=atm1,atm2,atm3") {
		t.Fatalf("status answered %q", st)
	}

	leader := leaderOf(t, atms)
	t.Logf("killing leader %s", leader.id)
	leader.p.Kill()
	newLeader := waitNewLeader(t, atms, leader)
	t.Logf("new leader %s", newLeader.id)
	live := without(atms, leader)
	live[0].expect(t, "deposit carol 10", "carol 10.00")
	live[1].expect(t, "transfer bob alice 5", "bob 70.75 alice 79.75")
	live[0].expect(t, "withdraw alice 4.75", "alice 75.00")
	live[1].expect(t, "balance carol", "carol 10.00")

	leader.start(t)
	leader.waitReady(t)
	want := []string{"alice 75.00", "bob 70.75", "carol 10.00"}
	for _, w := range want {
		leader.expect(t, "balance "+strings.Fields(w)[0], w)
	}
	wantAccounts := append(want, "accounts=3 total=155.75")
	if got := leader.sayN(t, "accounts", 4); strings.Join(got, "|") != strings.Join(wantAccounts, "|") {
		t.Fatalf("accounts after restart: %q, want %q", got, wantAccounts)
	}

	// Bad input answers error lines and changes nothing, on any ATM.
	bad := []string{
		"deposit alice 12abc", "deposit alice -5", "withdraw bob 1.001",
		"deposit alice 100000000000000000000", "transfer alice bob 0",
		"frobnicate", "withdraw nobody 1", "transfer nobody alice 1", "balance nobody",
		"withdraw carol 10.01", "deposit alice 92233720368547758.07",
		// Neither prompts nor stops the ATM: the next line is still read as a command.
		"withdraw", "deposit alice " + strings.Repeat("1", 70<<10),
	}
	for i, line := range bad {
		a := atms[i%3]
		if got := a.say(t, line); !strings.HasPrefix(got, "error:") {
			t.Errorf("%s: %q answered %q, want error:", a.id, line, got)
		}
	}
	for _, a := range atms {
		for _, w := range want {
			a.expect(t, "balance "+strings.Fields(w)[0], w)
		}
	}

	// quit stops an ATM; the end of a piped stdin does not (a3 serves until SIGTERM).
	if _, err := a2.p.Stdin.Write([]byte("quit\n")); err != nil {
		t.Fatal(err)
	}
	waitExit(t, a2)
	a3.p.Stdin.Close()
	a3.p.WaitOutput(t, "stdin closed; serving HTTP and Raft until SIGINT or SIGTERM", 30*time.Second)
	if _, err := a3.client().Status(context.Background()); err != nil {
		t.Fatalf("a3 after its stdin ended: %v", err)
	}
	if err := a3.p.Stop(); err != nil {
		t.Fatalf("a3 on SIGTERM: %v", err)
	}

	// The last ATM has no quorum: operations fail within seconds with a clear message.
	for _, cmd := range []string{"deposit alice 1", "balance alice"} {
		start := time.Now()
		got := a1.say(t, cmd)
		if !strings.HasPrefix(got, "error: no quorum") {
			t.Errorf("%q without quorum answered %q, want error: no quorum...", cmd, got)
		}
		t.Logf("%q failed after %v: %s", cmd, time.Since(start).Round(time.Millisecond), got)
	}
	if st := a1.say(t, "status"); !strings.Contains(st, "id=atm1") {
		t.Errorf("status without quorum answered %q", st)
	}
	a1.p.Stdin.Write([]byte("quit\n"))
	waitExit(t, a1)
}

func waitExit(t *testing.T, procs ...*atmProc) {
	t.Helper()
	for _, a := range procs {
		select {
		case <-a.p.Done():
			if err := a.p.Wait(); err != nil {
				t.Errorf("%s exited with %v", a.id, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not exit after quit/EOF", a.id)
		}
	}
}

// TestATMServesAfterStdinEnds: an ATM whose stdin ends at once (as /dev/null under nohup)
// says so once in its log and keeps serving until SIGTERM, which stops it cleanly.
func TestATMServesAfterStdinEnds(t *testing.T) {
	a := newATMs(t, 1, 1)[0]
	a.args = append(a.args, "--peers", a.id+"="+a.raft, "--bootstrap-expect", "1")
	a.start(t)
	a.p.Stdin.Close()
	a.waitReady(t)
	a.p.WaitOutput(t, "stdin closed; serving", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r, err := a.client().Deposit(ctx, "alice", "5"); err != nil || r.Balance != "5.00" {
		t.Fatalf("deposit over HTTP after stdin ended: %+v, %v", r, err)
	}
	select {
	case <-a.p.Done():
		t.Fatalf("the ATM exited after its stdin ended: %v", a.p.Wait())
	default:
	}
	if n := strings.Count(a.p.Output(), "stdin closed"); n != 1 {
		t.Errorf("stdin closed logged %d times, want once", n)
	}
	if err := a.p.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}
