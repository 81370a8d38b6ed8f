package clients

import (
	"math"
	"testing"
)

// TestMaxBatchBytes: a batch leaves the request header room in one NATS
// message; an unannounced max payload bounds nothing, and one too small
// for the header leaves no room.
func TestMaxBatchBytes(t *testing.T) {
	for _, c := range []struct {
		maxPayload int64
		want       int
	}{
		{1 << 20, 1<<20 - requestHeaderRoom},
		{8 << 20, 8<<20 - requestHeaderRoom},
		{0, math.MaxInt},
		{-1, math.MaxInt},
		{requestHeaderRoom, 0},
		{100, 0},
	} {
		if got := MaxBatchBytes(c.maxPayload); got != c.want {
			t.Errorf("MaxBatchBytes(%d) = %d, want %d", c.maxPayload, got, c.want)
		}
	}
}
