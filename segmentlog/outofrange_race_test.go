package segmentlog

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// TestOutOfRangeErrorsWhileAppending: the out-of-range errors of Term,
// IndexOfOffset and ReadBatches name the log's bounds, which they must read
// under the lock that appends take (under -race, reading them after it was
// released was reported as a race with Append).
func TestOutOfRangeErrorsWhileAppending(t *testing.T) {
	l := mustOpen(t, vfs.NewMem(), smallOptions())
	defer l.Close()
	// Offsets continue at 1,000, so offset 0 is below the log.
	if err := l.ResetOffsets(1, 0, 1000); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !done.Load() {
			if _, err := l.Term(math.MaxUint64 / 2); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("Term: %v", err)
				return
			}
			if _, err := l.IndexOfOffset(math.MaxUint64 / 2); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("IndexOfOffset: %v", err)
				return
			}
			if _, _, err := l.ReadBatches(nil, 0, math.MaxUint64, 1<<20); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("ReadBatches: %v", err)
				return
			}
		}
	})
	for i := uint64(1); i <= 2000; i++ {
		if err := l.Append([]protocol.Entry{derivedEntry(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
}
