package segmentlog

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/raftmq/raftmq/protocol"
)

// TestFailedResetLeavesTheLogReadable: a ResetOffsets whose new segment
// cannot be created (a full disk, say) fails, stickily, and the entries
// already there stay readable from their files, as after any failed
// write. Before, Reset closed the old segments' files before creating the
// new one, and a read below the tail cache then panicked on a nil file.
func TestFailedResetLeavesTheLogReadable(t *testing.T) {
	var failCreate atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failCreate.Load() && op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, tempSuffix) {
			return errInjected
		}
		return nil
	})
	opts := smallOptions()
	opts.TailCacheBytes = 1 << 10 // most entries are read from the files
	l := mustOpen(t, errorfs.Wrap(vfs.NewMem(), inj), opts)
	defer l.Close()
	r := rand.New(rand.NewPCG(5, 5))
	m := newModel()
	for i := uint64(1); i <= 40; i++ {
		e := randomEntry(r, i, 1, 500)
		m.append(e)
		if err := l.Append([]protocol.Entry{e}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	failCreate.Store(true)
	if err := l.ResetOffsets(1000, 3, 9000); !errors.Is(err, errInjected) {
		t.Fatalf("reset: %v, want the injected error", err)
	}
	if err := l.Append([]protocol.Entry{randomEntry(r, 41, 1, 10)}); !errors.Is(err, errInjected) {
		t.Fatalf("append after the failed reset: %v, want the sticky error", err)
	}
	checkAgainst(t, l, m)
	if _, _, err := l.ReadBatches(nil, 0, 40, 1<<20); err != nil {
		t.Fatalf("read batches after the failed reset: %v", err)
	}
}
