// Package cores decides how many cores (GOMAXPROCS) a server process gets when a
// launcher starts more of them than the machine has cores.
package cores

import (
	"os"
	"runtime"
	"strconv"
)

// Share is the GOMAXPROCS to give each of procs servers started on this machine: 0
// (Go's default: every core) unless they outnumber the cores, then 1. Each Go process
// sizes its scheduler for every core, and with more processes than cores their idle Ps
// spin looking for work while another process holds the cores (measured: three brokers
// on 2 cores with 1,000 idle partitions, docs/benchmarks.md "Raft per partition").
func Share(procs int) int {
	if procs > runtime.NumCPU() {
		return 1
	}
	return 0
}

// EnvVar is the broker's --gomaxprocs flag's variable: set, it is the child's to read.
const EnvVar = "QUORUMQ_GOMAXPROCS"

// BrokerArgs are the arguments a launcher adds to each of procs server processes that
// take --gomaxprocs: that flag with Share(procs), or none when Share gives 0 or
// QUORUMQ_GOMAXPROCS is set (the operator's choice, inherited by the children).
func BrokerArgs(procs int) []string {
	if _, set := os.LookupEnv(EnvVar); set {
		return nil
	}
	if n := Share(procs); n > 0 {
		return []string{"--gomaxprocs", strconv.Itoa(n)}
	}
	return nil
}

// GoEnv is the environment entry that gives any other Go server among procs (NATS in
// the benchmarks) the same share as BrokerArgs gives a broker, so that both systems run
// under the same scheduler settings: GOMAXPROCS from QUORUMQ_GOMAXPROCS when set (0:
// none), else from Share(procs); nil when the share is Go's default.
func GoEnv(procs int) []string {
	n := Share(procs)
	if v, set := os.LookupEnv(EnvVar); set {
		n, _ = strconv.Atoi(v)
	}
	if n <= 0 {
		return nil
	}
	return []string{"GOMAXPROCS=" + strconv.Itoa(n)}
}
