package scenario

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// The scenario's clients keep plain-text logs, one line per message, so that a failed
// run can be read by eye and the check reads exactly what the clients wrote:
//
//	producer:  ack <partition> <offset> <value>   the cluster acknowledged it
//	           unconfirmed <value>                the send failed: it may or may not be stored
//	consumer:  <partition> <offset> <value>
//
// Offsets are -1 where the SDK did not learn them (asynchronous sends).

// Sent is one line of a producer log.
type Sent struct {
	Value     string
	Acked     bool
	Partition int
	Offset    int64
}

// Received is one line of a consumer log.
type Received struct {
	Partition int
	Offset    int64
	Value     string
}

// Log appends lines to a file; safe for concurrent use. Every write is flushed to the
// file, so the log is complete up to the moment a test fails or the process dies.
type Log struct {
	mu sync.Mutex
	f  *os.File
}

// CreateLog creates (truncates) the log file at path.
func CreateLog(path string) (*Log, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &Log{f: f}, nil
}

func (l *Log) write(s string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := io.WriteString(l.f, s)
	return err
}

// Acked records values acknowledged at the given positions (same length).
func (l *Log) Acked(values []string, parts []int, offsets []int64) error {
	var b strings.Builder
	for i, v := range values {
		fmt.Fprintf(&b, "ack %d %d %s\n", parts[i], offsets[i], v)
	}
	return l.write(b.String())
}

// Unconfirmed records values whose send failed.
func (l *Log) Unconfirmed(values []string) error {
	var b strings.Builder
	for _, v := range values {
		fmt.Fprintf(&b, "unconfirmed %s\n", v)
	}
	return l.write(b.String())
}

// Received records consumed messages in the order they were handed out.
func (l *Log) Received(msgs []Received) error {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%d %d %s\n", m.Partition, m.Offset, m.Value)
	}
	return l.write(b.String())
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// ReadProducerLog parses a producer log.
func ReadProducerLog(path string) ([]Sent, error) {
	var out []Sent
	err := readLines(path, func(f []string) error {
		switch {
		case len(f) == 4 && f[0] == "ack":
			p, o, err := position(f[1], f[2])
			if err != nil {
				return err
			}
			out = append(out, Sent{Value: f[3], Acked: true, Partition: p, Offset: o})
		case len(f) == 2 && f[0] == "unconfirmed":
			out = append(out, Sent{Value: f[1], Partition: -1, Offset: -1})
		default:
			return fmt.Errorf("not a producer log line")
		}
		return nil
	})
	return out, err
}

// ReadConsumerLog parses a consumer log.
func ReadConsumerLog(path string) ([]Received, error) {
	var out []Received
	err := readLines(path, func(f []string) error {
		if len(f) != 3 {
			return fmt.Errorf("not a consumer log line")
		}
		p, o, err := position(f[0], f[1])
		if err != nil {
			return err
		}
		out = append(out, Received{Partition: p, Offset: o, Value: f[2]})
		return nil
	})
	return out, err
}

func readLines(path string, line func(fields []string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if err := line(strings.Fields(sc.Text())); err != nil {
			return fmt.Errorf("%s:%d: %w: %q", path, n, err, sc.Text())
		}
	}
	return sc.Err()
}

func position(part, off string) (int, int64, error) {
	p, err := strconv.Atoi(part)
	if err != nil {
		return 0, 0, fmt.Errorf("partition: %w", err)
	}
	o, err := strconv.ParseInt(off, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("offset: %w", err)
	}
	return p, o, nil
}
