//go:build !race

package segmentlog

// raceEnabled: the race detector is on (sync.Pool drops items at random).
const raceEnabled = false
