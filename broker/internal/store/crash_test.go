package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/partition"
)

const crashEnv = "QUORUMQ_STORE_CRASH_DIR"

// crashWriter is the child process of TestKilledMidBatch: it writes until killed,
// printing "ack <group> <index>" once each entry is durable in the log and handed to
// the FSM (which, like under raft, commits to the store asynchronously).
func crashWriter(t *testing.T, dir string) {
	db := openDB(t, dir)
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		grp := group(t, db, fmt.Sprintf("p/t/%d", g))
		f, err := partition.New(grp.Partition())
		if err != nil {
			t.Fatal(err)
		}
		ls := grp.LogStore()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Replay what the log has beyond the applied index, as raft does at start.
			index, _ := ls.LastIndex()
			applied, _, _, _ := f.Info()
			for i := applied + 1; i <= index; i++ {
				var l raft.Log
				if err := ls.GetLog(i, &l); err != nil {
					panic(err)
				}
				f.Apply(&l)
			}
			for {
				index++
				_, next, _, _ := f.Info()
				var batch [][]byte
				for i := range 10 {
					batch = append(batch, []byte(strings.Repeat(strconv.FormatUint(next+uint64(i), 10)+",", int(index%50))))
				}
				cmd := partition.EncodeProduce([]partition.Batch{{Msgs: batch}})
				if err := ls.StoreLog(&raft.Log{Index: index, Type: raft.LogCommand, Data: cmd}); err != nil {
					panic(err)
				}
				f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: cmd})
				mu.Lock()
				fmt.Fprintf(out, "ack %d %d\n", g, index)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKilledMidBatch SIGKILLs a writer process in the middle of its group commits,
// three times, and checks after each restart that the store is a consistent prefix of
// the log (its state matches its messages exactly: nothing applied twice or half) and
// that replaying the log brings back every acknowledged entry.
func TestKilledMidBatch(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" { // this is the writer the test kills
		crashWriter(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	acked := map[int]uint64{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidBatch$", "-test.v")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for n := 0; n < 400*(round+1) && sc.Scan(); {
			var g int
			var idx uint64
			if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &g, &idx); err == nil {
				acked[g] = max(acked[g], idx)
				n++
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		verify(t, dir, acked)
	}
}

func verify(t *testing.T, dir string, acked map[int]uint64) {
	t.Helper()
	db := openDB(t, dir)
	defer db.Close()
	for g, idx := range acked {
		grp := group(t, db, fmt.Sprintf("p/t/%d", g))
		ls := grp.LogStore()
		last, _ := ls.LastIndex()
		if last < idx {
			t.Fatalf("group %d: log ends at %d, entry %d was acknowledged", g, last, idx)
		}
		// What the store holds must be a consistent prefix of the log...
		st, err := grp.Partition().Load()
		if err != nil {
			t.Fatal(err)
		}
		checkConsistent(t, g, grp, st)
		// ...and replaying the rest of the log, as raft does, brings back every entry.
		f, err := partition.New(grp.Partition())
		if err != nil {
			t.Fatal(err)
		}
		for i := st.Applied + 1; i <= last; i++ {
			var l raft.Log
			if err := ls.GetLog(i, &l); err != nil {
				t.Fatal(err)
			}
			f.Apply(&l)
		}
		if _, err := f.Messages(0, 1); err != nil { // waits for the replayed commits
			t.Fatal(err)
		}
		if st, _ = grp.Partition().Load(); st.Applied < idx {
			t.Fatalf("group %d: applied %d after replay, entry %d was acknowledged", g, st.Applied, idx)
		}
		checkConsistent(t, g, grp, st)
	}
}

func checkConsistent(t *testing.T, g int, grp *Group, st partition.State) {
	t.Helper()
	if st.Next != 10*st.Applied {
		t.Fatalf("group %d: applied %d but next offset %d", g, st.Applied, st.Next)
	}
	msgs, err := grp.Partition().Messages(0, uint32(st.Next))
	if err != nil {
		t.Fatal(err)
	}
	var size uint64
	for off, m := range msgs {
		size += uint64(len(m))
		if len(m) > 0 && !strings.HasPrefix(string(m), strconv.Itoa(off)+",") {
			t.Fatalf("group %d: message %d = %.20q", g, off, m)
		}
	}
	if size != st.Bytes {
		t.Fatalf("group %d: messages hold %d bytes, state says %d", g, size, st.Bytes)
	}
}
