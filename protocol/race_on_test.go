//go:build race

package protocol

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation counts mean nothing in -race runs.
const raceEnabled = true
