//go:build race

package transport

// raceEnabled: the race detector keeps shadow memory for every allocation and every
// goroutine's history, so RSS bounds measured without it do not hold under -race.
const raceEnabled = true
