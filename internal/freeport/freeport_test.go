package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestTCP(t *testing.T) {
	seen := map[int]bool{}
	for _, udp := range []bool{false, true, false, true} {
		port, err := TCP(udp)
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		low, high := pickRange()
		if port < low || port > high {
			t.Fatalf("port %d outside %d-%d", port, low, high)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", port, err)
		}
		l.Close()
	}
}
