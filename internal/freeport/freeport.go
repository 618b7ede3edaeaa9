// Package freeport hands out loopback ports for processes that a test or a dev cluster
// starts and that bind the port themselves, later.
//
// Why not just ask the kernel for port 0 and pass it on: the kernel takes the ports of
// outgoing connections from the same ephemeral range, so between our close and the
// child's bind any connection on the machine (another test's client, a Raft dial) may
// take it: "address already in use" in a child, a flaky test. Ports below the ephemeral
// range are never handed out by the kernel on its own, so only another caller that
// picked the same one at random can collide, and within one process never.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// fallback is the range used when the ephemeral range cannot be read.
const (
	fallbackLow  = 20000
	fallbackHigh = 32767
)

var (
	mu        sync.Mutex
	handedOut = map[int]bool{}
)

// TCP returns a loopback port that is free now for TCP (and for UDP too when udp is set).
func TCP(udp bool) (int, error) {
	low, high := pickRange()
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := low + rand.IntN(high-low+1)
		if handedOut[port] || !free(port, udp) {
			continue
		}
		handedOut[port] = true
		return port, nil
	}
	return 0, errors.New("freeport: no free loopback port found")
}

// Addr returns "127.0.0.1:PORT" for a port that TCP would return.
func Addr() (string, error) {
	port, err := TCP(false)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// Addrs returns n addresses that Addr would return, all different.
func Addrs(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		var err error
		if out[i], err = Addr(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func free(port int, udp bool) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	if udp {
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}

// pickRange is the stretch of ports below the kernel's ephemeral range (at least 4,000
// ports wide and above the well-known ones), or the fallback.
func pickRange() (low, high int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallbackLow, fallbackHigh
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return fallbackLow, fallbackHigh
	}
	eph, err := strconv.Atoi(f[0])
	if err != nil || eph-1 < 10000+4000 {
		return fallbackLow, fallbackHigh
	}
	return 10000, eph - 1
}
