package segmentlog

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// syncToFS is an in-memory file system that records every SyncTo call on
// its files (file name and offset) and answers it with full and err.
type syncToFS struct {
	vfs.FS
	mu    sync.Mutex
	calls []syncToCall
	full  bool
	err   error
	// block, if not nil, holds every SyncTo until it is closed.
	block chan struct{}
}

type syncToCall struct {
	name   string
	offset int64
}

type syncToFile struct {
	vfs.File
	fs   *syncToFS
	name string
}

func (f syncToFile) SyncTo(offset int64) (bool, error) {
	f.fs.mu.Lock()
	f.fs.calls = append(f.fs.calls, syncToCall{f.name, offset})
	full, err, block := f.fs.full, f.fs.err, f.fs.block
	f.fs.mu.Unlock()
	if block != nil {
		<-block
	}
	return full, err
}

func (fs *syncToFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return syncToFile{f, fs, name}, nil
}

func (fs *syncToFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return syncToFile{f, fs, name}, nil
}

func (fs *syncToFS) recorded() []syncToCall {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.calls)
}

// writebackOptions: 4 KiB entries, a 16 KiB write buffer and tail cache,
// write-back every 64 KiB.
func writebackOptions() Options {
	o := DefaultOptions()
	o.WriteBufferBytes = 16 << 10
	o.TailCacheBytes = 16 << 10
	o.WritebackBytes = 64 << 10
	return o
}

// appendEntries appends appendBatch(l, n, size).
func appendEntries(t *testing.T, l *Log, n, size int) {
	t.Helper()
	if err := l.Append(appendBatch(l, n, size)); err != nil {
		t.Fatal(err)
	}
}

// A large Append starts write-back every WritebackBytes of the active
// segment, at increasing offsets within what was written; Syncs of less
// than WritebackBytes each never do; and write-back changes nothing that
// reads back.
func TestWritebackStartsEveryWritebackBytesOfOneLargeAppend(t *testing.T) {
	fs := &syncToFS{FS: vfs.NewMem()}
	opts := writebackOptions()
	l, err := Open(fs, "log", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendEntries(t, l, 256, 4<<10) // 1 MiB in one call
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	writebackIdle(t, l)
	calls := fs.recorded()
	// 1 MiB written in 16 KiB pieces: a start at every 64 KiB, at most
	// 16; fewer when a start was pending while the one before ran (the
	// newest replaces it) or when the Sync came first.
	if len(calls) < 1 || len(calls) > 16 {
		t.Fatalf("%d write-back starts for 1 MiB at 64 KiB each, want 1-16: %v", len(calls), calls)
	}
	end := l.active().end
	prev := int64(0)
	for _, c := range calls {
		// The segment was created under a temporary name.
		if strings.TrimSuffix(c.name, tempSuffix) != l.active().path {
			t.Fatalf("write-back of %s, active segment %s", c.name, l.active().path)
		}
		if c.offset-prev < opts.WritebackBytes || c.offset > end {
			t.Fatalf("write-back to %d after %d (segment end %d): %v", c.offset, prev, end, calls)
		}
		prev = c.offset
	}
	for range 40 { // 40 Syncs of 32 KiB: 1.25 MiB more, none started
		appendEntries(t, l, 8, 4<<10)
		if _, err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(fs.recorded()); n != len(calls) {
		t.Fatalf("Syncs of 32 KiB started write-back %d times", n-len(calls))
	}
	got, err := l.Entries(1, l.LastIndex()+1, 1<<30)
	if err != nil || len(got) != 256+40*8 {
		t.Fatalf("read back %d entries, %v", len(got), err)
	}
}

// Where SyncTo is a full data sync, the log asks once and never again.
func TestWritebackStopsWhereSyncToIsAFullSync(t *testing.T) {
	fs := &syncToFS{FS: vfs.NewMem(), full: true}
	l, err := Open(fs, "log", writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendEntries(t, l, 256, 4<<10)
	appendEntries(t, l, 256, 4<<10)
	if n := len(fs.recorded()); n != 1 {
		t.Fatalf("%d SyncTo calls where the first was a full sync, want 1", n)
	}
}

// A failed write-back start is a write failure: it reaches the caller and
// is sticky, nothing more is reported durable, and the log reopens with
// what was synced.
func TestWritebackFailureIsSticky(t *testing.T) {
	mem := vfs.NewMem()
	fs := &syncToFS{FS: mem}
	l, err := Open(fs, "log", writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	appendEntries(t, l, 4, 4<<10)
	if d, err := l.Sync(); err != nil || d != 4 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	fs.mu.Lock()
	fs.err = errInjected
	fs.mu.Unlock()
	// The start runs beside Append: Append may or may not see its
	// failure, the Sync after it must.
	if err := l.Append(appendBatch(l, 256, 4<<10)); err != nil && !errors.Is(err, errInjected) {
		t.Fatalf("append with a failing write-back: %v", err)
	}
	fs.mu.Lock()
	fs.err = nil
	fs.mu.Unlock()
	if _, err := l.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("sync after a failed write-back: %v", err)
	}
	if err := l.Append(appendBatch(l, 1, 4<<10)); !errors.Is(err, errInjected) {
		t.Fatalf("append after a failed write-back: %v", err)
	}
	if d := l.DurableIndex(); d != 4 {
		t.Fatalf("durable index %d after a failed write-back, want 4", d)
	}
	l.Close()
	l, err = Open(mem, "log", writebackOptions())
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

// appendBatch returns n record batch entries of about size bytes that
// follow l's last index.
func appendBatch(l *Log, n, size int) []protocol.Entry {
	r := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	entries := make([]protocol.Entry, n)
	for i := range entries {
		entries[i] = protocol.Entry{Index: l.LastIndex() + 1 + uint64(i), Term: 1, Type: protocol.EntryRecordBatch,
			Data: testBatch(4, size-protocol.BatchHeaderSize, r.Uint64())}
	}
	return entries
}

// A write-back start that blocks (a busy disk) does not hold up Append,
// which the Raft driver must return from before it sends a leader's
// entries to its followers; Sync waits for it.
func TestWritebackDoesNotBlockAppend(t *testing.T) {
	block := make(chan struct{})
	fs := &syncToFS{FS: vfs.NewMem(), block: block}
	l, err := Open(fs, "log", writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appended := make(chan error, 1)
	go func() {
		for range 4 { // 4 MiB: 64 starts' worth, the first one blocked
			if err := l.Append(appendBatch(l, 256, 4<<10)); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(block)
		t.Fatal("Append waited for a blocked write-back start")
	}
	if n := len(fs.recorded()); n != 1 {
		t.Fatalf("%d starts while the first was blocked, want 1", n)
	}
	synced := make(chan error, 1)
	go func() {
		_, err := l.Sync()
		synced <- err
	}()
	select {
	case err := <-synced:
		t.Fatalf("Sync returned (%v) while a write-back start was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(block)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if d := l.DurableIndex(); d != 4*256 {
		t.Fatalf("durable index %d, want %d", d, 4*256)
	}
}

// writebackIdle waits until l has no write-back start pending or running.
func writebackIdle(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.wb.mu.Lock()
		running := l.wb.running
		l.wb.mu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("write-back starts still running after 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// errseqFS models how the kernel reports a failed write-back: once per
// open file, to whichever of sync_file_range(WAIT_BEFORE) (SyncTo) and
// fdatasync (SyncData) checks first. Once armed, SyncData waits (up to 2
// s) for a SyncTo to take the error first, and that SyncTo returns only
// once release is closed.
type errseqFS struct {
	vfs.FS
	mu       sync.Mutex
	failed   bool // a write-back error not yet reported
	armed    atomic.Bool
	entered  chan struct{} // SyncData was called, armed
	taken    chan struct{} // a SyncTo took the error
	release  chan struct{}
	syncData atomic.Int32
}

type errseqFile struct {
	vfs.File
	fs *errseqFS
}

func (f errseqFile) takeError() bool {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	failed := f.fs.failed
	f.fs.failed = false
	return failed
}

func (f errseqFile) SyncTo(offset int64) (bool, error) {
	if f.fs.armed.Load() && f.takeError() {
		close(f.fs.taken)
		<-f.fs.release
		return false, errInjected
	}
	return false, nil
}

func (f errseqFile) SyncData() error {
	if f.fs.armed.Load() && f.fs.syncData.Add(1) == 1 {
		close(f.fs.entered)
		select {
		case <-f.fs.taken:
		case <-time.After(2 * time.Second):
		}
	}
	if f.takeError() {
		return errInjected
	}
	return f.File.SyncData()
}

func (fs *errseqFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return errseqFile{f, fs}, nil
}

func (fs *errseqFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return errseqFile{f, fs}, nil
}

// A write-back error that a start running beside a Sync's fdatasync takes
// (the kernel reports it once) must still fail that Sync: it may not
// report the entries durable.
func TestWritebackErrorTakenBesideASyncFailsTheSync(t *testing.T) {
	fs := &errseqFS{FS: vfs.NewMem(), entered: make(chan struct{}), taken: make(chan struct{}), release: make(chan struct{})}
	l, err := Open(fs, "log", writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendEntries(t, l, 4, 4<<10)
	if d, err := l.Sync(); err != nil || d != 4 {
		t.Fatalf("sync = %d, %v", d, err)
	}
	appendEntries(t, l, 3, 4<<10) // 5..7
	fs.mu.Lock()
	fs.failed = true // their write-back fails
	fs.mu.Unlock()
	fs.armed.Store(true)
	type result struct {
		durable uint64
		err     error
	}
	synced := make(chan result, 1)
	go func() {
		d, err := l.Sync()
		synced <- result{d, err}
	}()
	<-fs.entered // the Sync flushed 5..7 and is in its fdatasync
	appended := make(chan error, 1)
	go func() { appended <- l.Append(appendBatch(l, 64, 4<<10)) }() // 256 KiB: starts write-back
	time.AfterFunc(200*time.Millisecond, func() { close(fs.release) })
	r := <-synced
	if err := <-appended; err != nil && !errors.Is(err, errInjected) {
		t.Fatal(err)
	}
	if r.err == nil || r.durable >= 7 {
		t.Fatalf("Sync = %d, %v after the write-back of entries 5..7 failed (the error taken by a start), want the injected error", r.durable, r.err)
	}
	if !errors.Is(r.err, errInjected) {
		t.Fatalf("Sync = %v, want the injected error", r.err)
	}
	if d := l.DurableIndex(); d != 4 {
		t.Fatalf("durable index %d, want 4", d)
	}
}

// After TruncateAfter cuts the active segment back, write-back counts from
// the cut: a large Append then starts it (a Raft follower truncating a
// conflict and catching up).
func TestWritebackCountsFromATruncation(t *testing.T) {
	fs := &syncToFS{FS: vfs.NewMem()}
	l, err := Open(fs, "log", writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendEntries(t, l, 256, 4<<10) // 1 MiB
	if _, err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateAfter(4); err != nil {
		t.Fatal(err)
	}
	before := len(fs.recorded())
	appendEntries(t, l, 200, 4<<10) // 800 KiB: ends before the old end
	writebackIdle(t, l)
	if n := len(fs.recorded()) - before; n < 1 {
		t.Fatal("an 800 KiB Append after a truncation started no write-back (WritebackBytes 64 KiB)")
	}
}

// Entries written through by vector (pwritev, on a file with a descriptor)
// start write-back too.
func TestWritebackOfVectorWrites(t *testing.T) {
	fs := &syncToFS{FS: vfs.Default}
	l, err := Open(fs, t.TempDir(), writebackOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.canWriteVector() {
		t.Fatal("the log cannot write by vector on vfs.Default")
	}
	appendEntries(t, l, 256, 4<<10) // 1 MiB in one call: written through
	writebackIdle(t, l)
	if n := len(fs.recorded()); n < 1 {
		t.Fatal("1 MiB written through by vector started no write-back (WritebackBytes 64 KiB)")
	}
}
