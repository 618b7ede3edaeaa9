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
// A Producer sends its batches straight to each partition's leader broker, found
// through the managers' metadata (GET /topics/{name}, GET /brokers) and followed when
// it moves (a broker's 421 names the new leader; a partition without a leader is
// retried until the deadline). When no broker can be reached from the client it sends
// through the managers instead; WithDirectProduce(false) always does. Consumers and
// admin calls always go through the managers.
//
// Retries are safe: a produce carries the producer's id and a per-partition sequence
// number, the same on either path, so a retried produce whose first reply was lost is
// recognised as a duplicate; a consume names the offset it expects, so a retried
// consume returns the same messages instead of skipping past them.
package clientlib
