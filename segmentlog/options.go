package segmentlog

import (
	"fmt"
	"time"
)

// Options configures a Log. Start from DefaultOptions.
type Options struct {
	// SegmentMaxBytes rolls the active segment before an Append call that
	// would make it larger (before the entry that would, when the call's
	// entries do not fit in an empty segment either). Default 256 MiB, the
	// size at which a segment holds several Sync batches of the largest
	// entries the log is built for: 1,000 entries of 64 KiB per Sync are
	// 64 MiB, so a 256 MiB segment takes four such batches and rolls
	// between Append calls, once every four (with 64 MiB every batch rolled
	// in the middle of its call: a second fdatasync, an index file, a new
	// header and a directory sync, all inside the batch). Per-segment
	// costs (an fdatasync of the new header and one of the directory, an
	// index file, one open file) are then a small fraction of a second of
	// writes at disk speed. It stays well below Kafka's 1 GiB because the
	// active segment is scanned whole at Open (read + CRC of at most 256 MiB,
	// a fraction of a second) and because retention deletes whole segments,
	// so it frees space in 256 MiB steps (Redpanda uses 128 MiB). A single
	// larger entry gets a segment of its own.
	SegmentMaxBytes int64
	// SegmentMaxAge rolls a non-empty active segment once it is this old, so
	// retention by age can delete data that stops receiving writes. Zero
	// disables rolling by age. Default 24h.
	SegmentMaxAge time.Duration
	// IndexIntervalBytes is the distance between sparse index points (Raft
	// index, record offset and max timestamp to file position): a read
	// from a segment file starts at most this far before what it needs,
	// and every point is 32 bytes of memory for as long as its segment is
	// held. Default 16 KiB: 2 KiB of points per MiB of segment (512 KiB for
	// a full 256 MiB segment). At 4 KiB, four times that, the active
	// segment's points were new memory for the writer to touch as the
	// segment filled, which measured as about a third of the log's extra
	// CPU per 1 KiB batch (see the package documentation, Performance).
	IndexIntervalBytes int
	// TailCacheBytes bounds the memory kept for recently appended entries,
	// which reads serve without I/O. Unflushed entries are always cached.
	// An Append call larger than this by at least WriteBufferBytes writes
	// its entries before its last TailCacheBytes straight to the file,
	// through one reused chunk, and caches only the rest (see Log.Append).
	// Default 8 MiB.
	TailCacheBytes int
	// WriteBufferBytes is the size of the append buffer flushed to the file
	// when full and at every Sync. Default 1 MiB.
	WriteBufferBytes int
	// MaxEntryBytes bounds one entry's Data. Default 64 MiB.
	MaxEntryBytes int
	// PreallocateBytes keeps the active segment's file extended (by a
	// size-extending fallocate) up to this many bytes beyond its data:
	// when a write passes the file's end, the file grows to the write's
	// end plus PreallocateBytes (rounded up to 4 KiB, at most to
	// SegmentMaxBytes). An fdatasync that does not change the file's size
	// need not commit the inode, which makes small Syncs cheaper (see the
	// package documentation, Preallocation). The log preallocates only
	// while its Syncs write at most 16 KiB on average: larger Syncs gain
	// nothing from it and measured slower. A roll cuts the sealed
	// segment to its data. Zero disables it; on a file system without
	// fallocate it is off. Default 4 MiB: the space a partition reserves
	// beyond its data stays below 4 MiB + 4 KiB, and only one Sync in
	// about 30,000 of 100 B entries grows the file.
	PreallocateBytes int64
	// WritebackBytes starts the kernel writing the active segment's data to
	// the disk, without waiting for it (sync_file_range with
	// SYNC_FILE_RANGE_WRITE), once this many bytes were written to it since
	// the last Sync or the last such start: a Sync after a large Append
	// then finds most of the data on the disk already, its write-back
	// having run while Append framed and wrote the rest (see the package
	// documentation, Write-back). It never makes anything durable: Sync's
	// fdatasync does. Files without a descriptor, and platforms or file
	// systems without the call, have none. Zero disables it. Default
	// 4 MiB: four write buffers, above the broker's usual Sync (a few
	// batches of at most 1 MiB), so it is Appends of several MiB between
	// Syncs (a follower catching up, the benchmark's 64 KiB entries) that
	// start it.
	WritebackBytes int64
	// Now is the wall clock used for rolling by age and segment creation
	// times. Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		SegmentMaxBytes:    256 << 20,
		SegmentMaxAge:      24 * time.Hour,
		IndexIntervalBytes: 16 << 10,
		TailCacheBytes:     8 << 20,
		WriteBufferBytes:   1 << 20,
		MaxEntryBytes:      64 << 20,
		PreallocateBytes:   4 << 20,
		WritebackBytes:     4 << 20,
		Now:                time.Now,
	}
}

// Validate reports the first invalid field. It does not modify o.
func (o Options) Validate() error {
	switch {
	case o.SegmentMaxBytes < segmentHeaderSize+frameHeaderSize:
		return fmt.Errorf("segmentlog: SegmentMaxBytes %d is too small", o.SegmentMaxBytes)
	case o.SegmentMaxAge < 0:
		return fmt.Errorf("segmentlog: SegmentMaxAge %v is negative", o.SegmentMaxAge)
	case o.IndexIntervalBytes <= 0:
		return fmt.Errorf("segmentlog: IndexIntervalBytes %d must be positive", o.IndexIntervalBytes)
	case o.TailCacheBytes < 0:
		return fmt.Errorf("segmentlog: TailCacheBytes %d is negative", o.TailCacheBytes)
	case o.WriteBufferBytes <= 0 || o.WriteBufferBytes > 1<<30:
		return fmt.Errorf("segmentlog: WriteBufferBytes %d must be in (0, 1 GiB]", o.WriteBufferBytes)
	case o.MaxEntryBytes <= 0 || o.MaxEntryBytes > 1<<30:
		return fmt.Errorf("segmentlog: MaxEntryBytes %d must be in (0, 1 GiB]", o.MaxEntryBytes)
	case o.PreallocateBytes < 0 || o.PreallocateBytes > 1<<30:
		return fmt.Errorf("segmentlog: PreallocateBytes %d must be in [0, 1 GiB]", o.PreallocateBytes)
	case o.WritebackBytes < 0:
		return fmt.Errorf("segmentlog: WritebackBytes %d is negative", o.WritebackBytes)
	case o.Now == nil:
		return fmt.Errorf("segmentlog: Now is nil")
	}
	return nil
}
