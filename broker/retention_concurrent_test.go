package broker

import "testing"

// TestRetentionWhileProducing runs retention from the brokers' own loop
// while records are produced and offsets committed.
func TestRetentionWhileProducing(t *testing.T) {
	retentionScenario(t, true)
}
