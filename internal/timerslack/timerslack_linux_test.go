package timerslack

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The test binary plays the program: with envChild set it applies the slack and
// reports the slack of many threads (new ones included) and its pid.
const envChild = "TIMERSLACK_TEST_CHILD"

// The child applies the slack from the main thread, as the broker does.
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		child()
		return
	}
	os.Exit(m.Run())
}

func child() {
	if err := Apply(20 * time.Millisecond); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	// The parent-death signal the parent set survives the re-exec (set on the main
	// thread, it is lost if another thread execs).
	var sig int
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, 2 /* PR_GET_PDEATHSIG */, uintptr(unsafe.Pointer(&sig)), 0); errno != 0 {
		fmt.Println("error:", errno)
		os.Exit(1)
	}
	// Locked goroutines force the runtime to start threads of its own.
	const threads = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seen  = map[time.Duration]int{}
		block = make(chan struct{})
	)
	for range threads {
		wg.Add(1)
		go func() {
			runtime.LockOSThread()
			d, err := get()
			mu.Lock()
			if err != nil {
				d = -1
			}
			seen[d]++
			mu.Unlock()
			wg.Done()
			<-block // keep the thread so that the next goroutine needs another
		}()
	}
	wg.Wait()
	close(block)
	fmt.Printf("pid %d slacks %v pdeathsig %d\n", os.Getpid(), seen, sig)
}

func TestApplyReachesEveryThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1")
	// SIGWINCH: ignored by default, should the test's thread that started the child end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGWINCH}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := fmt.Sprintf("pid %d slacks map[20ms:16] pdeathsig %d", cmd.Process.Pid, syscall.SIGWINCH)
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("child printed %q, want %q (same pid after the re-exec, every thread with the slack, the parent-death signal kept)", got, want)
	}
}
