package segmentlog

import (
	"errors"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
	"golang.org/x/sys/unix"
)

// writeRanges records the log's write-back starts (offset and length) in
// place of the system call, and answers each with err.
type writeRanges struct {
	mu     sync.Mutex
	ranges [][2]int64
	err    error
}

func (w *writeRanges) start(fd uintptr, off, n int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ranges = append(w.ranges, [2]int64{off, n})
	return w.err
}

func (w *writeRanges) recorded() [][2]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][2]int64(nil), w.ranges...)
}

// openWriteback opens a log on the real file system (write-back needs a
// descriptor) in a temporary directory with opts, its write-back starts
// recorded by the returned writeRanges.
func openWriteback(t *testing.T, opts Options) (*Log, *writeRanges, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(vfs.Default, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	w := &writeRanges{}
	l.startWriteRange = w.start
	return l, w, dir
}

// writebackOptions: write-back every 64 KiB, a 16 KiB write buffer, and a
// tail cache of cache bytes (an Append call larger than it by a write
// buffer writes through by vector).
func writebackOptions(cache int) Options {
	o := DefaultOptions()
	o.WriteBufferBytes = 16 << 10
	o.TailCacheBytes = cache
	o.WritebackBytes = 64 << 10
	return o
}

// appendBatch returns n record batch entries of about size bytes that
// follow l's last index.
func appendBatch(l *Log, n, size int) []protocol.Entry {
	entries := make([]protocol.Entry, n)
	for i := range entries {
		entries[i] = protocol.Entry{Index: l.LastIndex() + 1 + uint64(i), Term: 1, Type: protocol.EntryRecordBatch,
			Data: testBatch(4, size-protocol.BatchHeaderSize, uint64(i))}
	}
	return entries
}

// appendEntries appends appendBatch(l, n, size).
func appendEntries(t *testing.T, l *Log, n, size int) {
	t.Helper()
	if err := l.Append(appendBatch(l, n, size)); err != nil {
		t.Fatal(err)
	}
}

// checkRanges checks that write-back started n to max times, over
// consecutive ranges of at least WritebackBytes each from first, all
// within the active segment's data.
func checkRanges(t *testing.T, l *Log, ranges [][2]int64, first int64, n, max int) {
	t.Helper()
	if len(ranges) < n || len(ranges) > max {
		t.Fatalf("%d write-back starts, want %d to %d: %v", len(ranges), n, max, ranges)
	}
	next, end := first, l.active().end
	for _, r := range ranges {
		if r[0] != next || r[1] < l.opts.WritebackBytes || r[0]+r[1] > end {
			t.Fatalf("write-back of [%d, %d) after %d (segment end %d): %v", r[0], r[0]+r[1], next, end, ranges)
		}
		next = r[0] + r[1]
	}
}

// One large Append starts write-back every WritebackBytes of the active
// segment, over the bytes written since the last start, both when it
// frames entries into write buffers and when it writes them through by
// vector; Syncs of less than WritebackBytes each never start it; and
// the entries read back.
func TestWritebackStartsEveryWritebackBytesOfOneLargeAppend(t *testing.T) {
	for _, c := range []struct {
		name  string
		cache int
	}{{"buffered", 8 << 20}, {"vector", 16 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			l, w, _ := openWriteback(t, writebackOptions(c.cache))
			if got := l.throughCount(appendBatch(l, 256, 4<<10), 256*(frameHeaderSize+4<<10)) > 0; got != (c.name == "vector") {
				t.Fatalf("the call writes through: %v", got)
			}
			appendEntries(t, l, 256, 4<<10) // 1 MiB in one call
			ranges := w.recorded()
			// A start per 64 KiB, in 16 KiB writes (buffered) or about
			// 256 KiB ones (vector).
			checkRanges(t, l, ranges, 0, 3, 16)
			if _, err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			for range 40 { // 40 Syncs of 32 KiB: 1.25 MiB more, none started
				appendEntries(t, l, 8, 4<<10)
				if _, err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(w.recorded()); n != len(ranges) {
				t.Fatalf("Syncs of 32 KiB started write-back %d times: %v", n-len(ranges), w.recorded())
			}
			got, err := l.Entries(1, l.LastIndex()+1, 1<<30)
			if err != nil || len(got) != 256+40*8 {
				t.Fatalf("read back %d entries, %v", len(got), err)
			}
		})
	}
}

// Where the system call is not supported, the log tries once and never
// again.
func TestWritebackStopsWhereUnsupported(t *testing.T) {
	l, w, _ := openWriteback(t, writebackOptions(8<<20))
	w.err = errors.Join(errors.ErrUnsupported, unix.ENOSYS)
	appendEntries(t, l, 256, 4<<10)
	appendEntries(t, l, 256, 4<<10)
	if n := len(w.recorded()); n != 1 {
		t.Fatalf("%d write-back starts where the first was unsupported, want 1", n)
	}
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
}

// A failed write-back start is a write failure: it reaches the caller and
// is sticky, nothing more is reported durable, and the log reopens with
// what was synced.
func TestWritebackFailureIsSticky(t *testing.T) {
	opts := writebackOptions(8 << 20)
	l, w, dir := openWriteback(t, opts)
	appendEntries(t, l, 4, 4<<10)
	if d, err := l.Sync(); err != nil || d != 4 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	w.err = unix.EIO
	if err := l.Append(appendBatch(l, 256, 4<<10)); !errors.Is(err, unix.EIO) {
		t.Fatalf("append with a failing write-back: %v", err)
	}
	w.err = nil
	if _, err := l.Sync(); !errors.Is(err, unix.EIO) {
		t.Fatalf("sync after a failed write-back: %v", err)
	}
	if err := l.Append(appendBatch(l, 1, 4<<10)); !errors.Is(err, unix.EIO) {
		t.Fatalf("append after a failed write-back: %v", err)
	}
	if d := l.DurableIndex(); d != 4 {
		t.Fatalf("durable index %d after a failed write-back, want 4", d)
	}
	l.Close()
	l, err := Open(vfs.Default, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LastIndex() < 4 {
		t.Fatalf("reopened log ends at %d, want at least the 4 synced entries", l.LastIndex())
	}
	if _, err := l.Entries(1, l.LastIndex()+1, 1<<30); err != nil {
		t.Fatal(err)
	}
}

// After TruncateAfter cuts the active segment back, write-back counts from
// the cut: a large Append then starts it (a Raft follower truncating a
// conflict and catching up).
func TestWritebackCountsFromATruncation(t *testing.T) {
	l, w, _ := openWriteback(t, writebackOptions(8<<20))
	appendEntries(t, l, 256, 4<<10) // 1 MiB
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateAfter(4); err != nil {
		t.Fatal(err)
	}
	cut := l.active().end
	before := len(w.recorded())
	appendEntries(t, l, 200, 4<<10) // 800 KiB: ends before the old end
	checkRanges(t, l, w.recorded()[before:], cut, 1, 13)
}

// The real system call, on this machine's file system: starts succeed
// (or write-back turns itself off where it is not supported), and the
// log syncs and reads back.
func TestWritebackOnTheRealFileSystem(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(vfs.Default, dir, writebackOptions(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendEntries(t, l, 256, 4<<10)
	if d, err := l.Sync(); err != nil || d != 256 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	if got, err := l.Entries(1, 257, 1<<30); err != nil || len(got) != 256 {
		t.Fatalf("read back %d entries, %v", len(got), err)
	}
}
