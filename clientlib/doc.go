// Package clientlib is the Go SDK of quorumq: an Admin for topics, a Producer and a
// Consumer, all talking to the managers' public REST API.
//
// A Client finds the managers through a discovery.Resolver (service quorumq-manager)
// or a fixed list (WithManagers), prefers the write manager (the instance tagged
// "leader") and moves to another manager when one fails; every manager answers, since
// read managers forward writes. Calls are retried with exponential backoff until the
// context's deadline on network errors, 5xx replies and "not leader" answers, and never
// on 4xx errors the caller caused.
//
// Retries are safe: a produce carries the producer's id and a per-partition sequence
// number, so a retried produce whose first reply was lost is recognised as a duplicate;
// a consume names the offset it expects, so a retried consume returns the same
// messages instead of skipping past them.
package clientlib
