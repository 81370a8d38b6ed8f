package segmentlog

import (
	"os"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// TestLogHoldsNoDescriptorForItsDirectory: an open log holds its lock
// file, a read handle per segment and the active segment's write handle,
// and nothing for its directory (opened only to sync it). A broker runs a
// log per partition replica, so every descriptor a log holds counts
// thousands of times against the process's open-file limit. It counts the
// process's descriptors: no test of the package runs in parallel with it.
func TestLogHoldsNoDescriptorForItsDirectory(t *testing.T) {
	openFDs := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count descriptors: %v", err)
		}
		return len(entries)
	}
	dir := t.TempDir()
	before := openFDs()
	l, err := Open(vfs.Default, dir, smallOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Rolls sync the directory.
	for i := uint64(1); i <= 200; i++ {
		if err := l.Append([]protocol.Entry{derivedEntry(i, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	held := openFDs() - before
	segments := l.SegmentCount()
	if want := 2 + segments; held != want {
		t.Fatalf("the log holds %d descriptors with %d segments, want %d (its lock, a read handle per segment, the active one's write handle)", held, segments, want)
	}
}
