// Package segmentlog is raftmq's segmented append-only log. One Log holds
// one partition's Raft log, and consumers read the very bytes Raft
// replicated: there is no second copy. *Log implements raft.LogStorage.
//
// # Usage
//
//	log, err := segmentlog.Open(vfs.Default, dir, segmentlog.DefaultOptions())
//	err = log.Append(entries)            // buffered; stamps batch base offsets
//	durable, err := log.Sync()           // group commit
//	entries, err := log.Entries(lo, hi, maxBytes)
//	batches, next, err := log.ReadBatches(nil, offset, commitIndex, maxBytes)
//	err = log.TruncateAfter(index)       // Raft conflict (§5.3), durable on return
//	n, err := log.DeleteBefore(index)    // retention: whole sealed segments
//	offset, err := log.OffsetForTimestamp(ts) // seek by time
//	err = log.Close()
//
// # Record offsets
//
// Append assigns record offsets (docs/adr/0001): for a record batch entry
// it writes NextOffset() into the base-offset field of its own copy of the
// batch (protocol.StampBatch; the batch CRC does not cover it) and advances
// NextOffset by the record count. Every replica's log computes the same
// offsets because Raft logs match index by index. Other entry types take an
// index but no offset. OffsetOfIndex, IndexOfOffset and ReadBatches find
// records without decoding them.
//
// # Files
//
// A log is one directory:
//
//	00000000000000000001.log   segment: entries from index 1
//	00000000000000000001.idx   its sparse index (sealed segments only)
//	00000000000000052817.log   the active segment (the last one)
//	LOCK
//
// Segments are named by their first Raft index, zero-padded to 20 digits.
// A segment rolls before an Append call whose entries would take it past
// Options.SegmentMaxBytes, so one call's entries lie in one file; a call
// too large for an empty segment rolls before the entry that would not
// fit. A segment also rolls once it is Options.SegmentMaxAge old. The
// default size, 256 MiB, holds four Sync batches of the largest entries
// the log is built for (1,000 entries of 64 KiB), so segments roll
// between calls and a roll's cost is shared by several batches, while
// Open's scan of the active segment and retention's unit (whole segments)
// stay small; see Options.SegmentMaxBytes.
//
// # Segment format
//
// All integers are little-endian. A segment starts with a 64-byte header:
//
//	+---------+---------+-------+----------+-------------+----------+-------------+------------+----------+--------+
//	| magic   | version | flags | reserved | first index | prevTerm | firstOffset | generation | created  | CRC32C |
//	| 8 bytes | 2       | 2     | 4        | 8           | 8        | 8           | 8          | 8 (ms)   | 4+pad  |
//	+---------+---------+-------+----------+-------------+----------+-------------+------------+----------+--------+
//	  0         8         10      12         16            24         32            40           48         60
//
// magic is "raftmqSG"; the CRC32C (Castagnoli) at byte 60 covers bytes
// [0, 60). prevTerm is the term of first index - 1, firstOffset the record
// offset the segment's first batch gets, generation is bumped by Reset.
// Entries follow, each framed:
//
//	+---------+---------+---------+---------+------+----------+----------------+
//	| CRC32C  | length  | index   | term    | type | reserved | payload        |
//	| 4 bytes | 4       | 8       | 8       | 1    | 7 (zero) | length bytes   |
//	+---------+---------+---------+---------+------+----------+----------------+
//	  0         4         8         16        24     25         32
//
// The CRC32C covers bytes [4, 32+length): the rest of the header and the
// payload. A record batch payload is the stamped batch, byte for byte what
// ReadBatches returns. After the last frame the file holds only zeros (or
// ends): truncation zeroes the bytes it drops rather than shrinking the
// file, which vfs.File cannot do, and the active segment is preallocated
// ahead of its data (see Preallocation), so an all-zero frame header marks
// the end. The zeros after the last frame are not data: the segment's
// size is where its data ends (the end the log tracks, the index file's
// data end), never the file's size. A sealed segment ends at its last
// frame on a file system where the log can cut files (a roll cuts the
// preallocated space); elsewhere it keeps its zero tail.
//
// # Index format
//
// A sealed segment has a sparse index file: a 96-byte header, then one
// 32-byte point per IndexIntervalBytes (default 16 KiB) of segment, then a
// CRC32C of the points.
//
//	header: magic "raftmqIX" (8) | version (2) | reserved (2) | point count (4)
//	        first index (8) | last index (8) | last term (8) | data end (8)
//	        next offset (8) | last frame position (8) | last frame CRC (4)
//	        reserved (4) | max timestamp (8) | reserved (12) | CRC32C of [0, 92) (4)
//	point:  index (8) | file position (8) | record offset (8) | max timestamp (8)
//
// A point says the frame of entry index starts at the position; its record
// offset is the log's next offset before that entry (its base offset for a
// batch), so both Raft index -> position and record offset -> position are
// binary searches; its max timestamp is the largest batch MaxTimestamp in
// the segment up to that entry (the time index). The header names the last
// frame and where data ends; at open the log checks that frame (index,
// term, CRC) and the zeros after it, so a stale index (one written before a
// truncation, say) is detected in O(1) and rebuilt by scanning the segment,
// as is a missing or invalid one. Index files are written by rename and not
// synced: they are caches of the segment.
//
// # Recovery
//
// Open scans the active (last) segment. Its first invalid frame (short,
// CRC mismatch, bad header, wrong index, term going down, base offset not
// following) ends the log only if it is a torn write: only bytes written
// after the last completed sync can be torn, and after a crash they are a
// mix of what was written and zeros, in sector units, in any order. So the
// frame is cut when the file ends inside it, or when part of it lies in a
// 512-byte sector that reads as zeros from there to its end, unless a
// one-bit change of its length makes it valid (a damaged length, not a
// torn write: a frame that ends in the preallocated zeros is checked this
// way as it was when the file ended inside it); the bytes from there on
// are zeroed and the cut synced. Later valid frames may survive a crash that lost an
// earlier page; they were never synced, so cutting them drops nothing that
// was reported durable. Any other invalid frame (a complete frame failing
// its CRC with no zeroed sector, a length running over the following valid
// frames, a valid frame out of sequence) means synced data is damaged: Open
// fails with ErrCorrupt naming the file and position, and cuts nothing. Any
// invalid frame in a sealed segment (found while rebuilding
// its index, or later on a read), a segment that does not follow the
// previous one, or a bad segment header is an error matching ErrCorrupt
// (a *CorruptError naming file and byte position); data is never dropped
// silently there. Segments of an older generation than the newest are
// leftovers of an interrupted Reset and are removed.
//
// Zero tails. A run of zeros from the end of the last valid frame to the
// end of the file is preallocated space (or bytes a truncation zeroed),
// never corruption, in any segment: the active segment keeps it as its
// preallocation (the file is not cut at Open), a sealed one with a zero
// tail (only on a file system whose files cannot be cut; elsewhere the
// roll's cut is durable before the next segment exists, so a crash during
// a roll leaves the tail on what is still the active segment) is read to
// its last frame. A non-zero byte in the zeros after the last frame is an
// invalid frame like any other: in the active segment, the torn-write
// rule decides. A byte in the 512-byte sector where the data ends cannot
// be the remains of a lost write (that sector would read as zeros from the
// end of the data on), so it is ErrCorrupt at the end of the data; a byte
// in a later sector is what is left of an unsynced write and is cut
// (zeroed), keeping every entry. In a sealed segment it is ErrCorrupt when
// the segment is scanned (its index file missing or stale); a valid index
// file is checked against the 32 bytes after the data end only, and reads
// never look further.
//
// # Durability
//
// Append buffers: it frames entries into an append chunk of
// WriteBufferBytes, written to the file when full. Sync writes the rest
// of the buffer, fdatasyncs the active segment, and returns the durable
// last index. Concurrent Sync callers share
// one fdatasync (group commit). A roll cuts the old segment's preallocated
// space (ftruncate) and syncs the old segment, one fdatasync for both,
// before the new one is created (by a synced temporary file renamed into place, then a
// directory sync), so only the active segment can have a torn tail.
// TruncateAfter, ResetOffsets and DeleteBefore are durable when they
// return. Any write or sync failure is sticky: the log reports it from every
// later Append, Sync and maintenance call, never reports those entries
// durable, and must be reopened, which recovers what reached the disk.
//
// # Performance
//
// Append frames entries (copy, stamp, CRC32C) into reused append chunks and
// describes each in the tail cache ring in place, a full chunk and Sync
// write with one positional write per WriteBufferBytes, Sync fdatasyncs,
// and the tail cache keeps the frames where they are (see cache.go; a
// call larger than the cache writes its older entries through, see
// writer.go, from the caller's memory by pwritev where the file has a
// descriptor, see vector.go). The
// target, from the issue: Append+Sync of 1,000 entries per Sync reaches at
// least 90% of the MB/s of writing the same bytes, pre-framed, with plain
// os.File writes (in WriteBufferBytes pieces) and one fdatasync per batch,
// for 100 B, 1 KiB and 64 KiB entries, with at most one allocation per
// entry. The fdatasync dominates both; what is left to the log is its own
// CPU and, every SegmentMaxBytes, a roll (three more
// flushes: old segment, new header, directory). Rolling between Append
// calls, not inside one, keeps a call's data in one file: the old
// segment's flush then finds nothing left to write (the previous Sync
// wrote it), where a roll inside a 64 MiB call split that call's data
// over two fdatasyncs, the first stopping the writer mid-call (strace -T:
// 39 ms + 18 ms for one batch). The interleaved benchmark
// runs a log batch and a baseline batch alternately and reports, one line
// per size, ratio-% (the MB/s ratio from total times, the target),
// median-ratio-% (median of per-batch ratios), both MB/s, both CPU times
// per batch and rolls/batch; allocs/op is per 1,000 entries:
//
//	go test -c -o /tmp/seg.test ./segmentlog
//	/tmp/seg.test -test.run '^$' -test.bench VsBaseline -test.benchtime 300x -test.benchmem
//
// Where the CPU goes at 1 KiB (2026-11-23, session 7). The log's CPU per
// 1,000-entry batch exceeded the baseline's by about 330 us, where
// BenchmarkAppendCPU put the log's own work at about 110 us. Measured per
// thread and per call (BenchmarkAppendSyncSplit; 500 batches, load 0.7),
// the file system costs both sides the same: pwrite 153 against the
// baseline's write 144 us, fdatasync 138 against 135 us (the log writes its
// batch in two pieces, where the full chunk and the Sync split it; both
// files are appended to, not preallocated, since Syncs of 1 MB are far
// above the 16 KiB rule). The benchmark's CPU figures are
// getrusage(RUSAGE_SELF), every thread of the process: the Go runtime's own
// threads (sysmon waking every 20 us while a syscall blocks, idle threads
// spinning for work) add 40-70 us per batch to either side, in proportion
// to its wall time, so 20-30 us more to the log's. The rest, about 200 us
// at the time, was Append: copy and CRC (fold512) about 40 us, bookkeeping
// per entry, and, a fifth of it in perf and in BenchmarkAppendCPU's
// profile, the active segment's index point list growing: append grows a
// slice that large by about 1.25 times a step, each step a new allocation
// copied into, and first touches of memory are what cost on this VM (14-23
// us per 4 KiB page, against 0.05 us for touching a page again; a 1 KiB
// batch adds 8 KiB of points). The list now grows eightfold a step, bounded
// by a full segment's list (growPoints): it touches about 1.15 times its
// final size instead of some five times, and copies a seventh of it.
// Framing CPU per batch (log-frame-us, three alternated runs, load
// 0.8-2.5): 150/166/221 us before, 108/133/155 with doubling; doubling
// against eightfold 172/177/160 -> 151/167/155. The interleaved benchmark,
// six runs of each build alternated (the code before the point list change
// against eightfold growth, 4 KiB interval), load 1.2-1.5 at the start of
// each (other sessions' work made it up to 2.6 during runs): 1 KiB ratio-%
// 80.2, 82.8, 76.3, 82.0, 78.8, 83.9 -> 87.4, 84.0, 83.9, 82.2, 80.5, 88.7,
// the log's extra CPU per batch 342, 274, 268, 280, 373, 321 -> 310, 239,
// 243, 326, 263, 157 us; 100 B and 64 KiB within the noise.
//
// Which memory the Go heap has free and already touched when the list grows
// decides how much of that cost shows: with the garbage collector off
// during the benchmark's warm-up only, log-frame-us in the 300-batch window
// was 143 against 176-215 us (three pairs), the difference all in
// publishing points (perf: page faults) and in the first reads of the
// caller's batches. So the default IndexIntervalBytes is now 16 KiB, not 4
// KiB: a quarter of the points, 32 bytes per 16 KiB of segment (512 KiB for
// a full segment; at 1 KiB entries half a page of new points per
// 1,000-entry batch instead of two), and a read from a segment file starts
// at most 16 KiB before what it needs (BenchmarkReadBatches/disk and
// BenchmarkRead/disk moved within their noise, 51-76 against 56-63 us and
// 360-398 against 358-380 us). Interleaved benchmark, three alternated runs
// each, load 1.1-1.3, 4 KiB -> 16 KiB: at 1 KiB ratio-% 80.9, 92.1, 90.2 ->
// 89.2, 85.7, 92.8, the log's extra CPU per batch 192, 202, 147 -> 134,
// 142, 131 us; 100 B 89.1, 89.8, 89.1 -> 96.4, 90.2, 84.9; 64 KiB (one
// point per entry either way) 90.3, 89.5, 92.0 -> 89.1, 90.7, 92.2.
//
// The session's result, three runs of each build alternated at load 1.3-1.5
// (2026-11-23 17:38-17:45 UTC), the code of c10220d against both changes,
// ratio-% (median-ratio-%) and log / baseline CPU per batch:
//
//	        before                               after
//	100 B   81.7 (74.1) 90.0 (84.4) 91.0 (86.0)  101.4 (94.2) 94.0 (88.5) 83.4 (78.1)
//	        258/199 251/199 248/190 us           261/192 301/236 286/218 us
//	1 KiB   84.4 (89.5) 81.4 (84.7) 83.4 (88.7)  91.1 (88.2) 90.6 (82.2) 92.2 (90.8)
//	        634/340 624/330 655/360 us           465/353 645/436 516/366 us
//	64 KiB  88.8 (90.5) 91.4 (92.6) 89.4 (90.1)  88.6 (90.9) 91.2 (91.5) 89.6 (91.0)
//	        19.9/13.7 23.1/18.4 20.4/15.4 ms     20.7/14.0 19.6/14.5 22.4/16.6 ms
//
// Three more alternated runs (17:50-17:58 UTC, load 1.2-1.6, this time the
// new code first): 1 KiB 81.4, 81.8, 84.5 -> 91.2, 87.7, 93.0, the log's
// extra CPU 280, 302, 291 -> 142, 162, 181 us; 100 B 89.0, 94.8, 92.1 ->
// 90.2, 72.9, 86.0 (the 72.9 with the baseline's own CPU per batch a
// quarter up: a neighbour's burst; the log's extra CPU at 100 B was 52-84
// us before and 58-83 after over all these runs); 64 KiB 88.6, 88.1, 88.5
// -> 86.0, 88.3, 88.8. Over the six runs ratio-% reached 90 at 1 KiB in 5
// (before: 0), at 100 B in 3 (before: 4), at 64 KiB in 1 (before: 1); 64
// KiB sits at 86-91 either way.
//
// Allocations per 1,000 entries stayed 1 (1 KiB, 100 B) and 11 (64 KiB);
// bytes allocated per 1 KiB batch fell from 40,197 to 3,961.
//
// At 1 KiB the log's extra CPU per batch went from 268-373 to 157-326 us
// with the list's growth, and to 112-209 us with the sparser index. What is
// left there, in perf of the interleaved run: copy and CRC (fold512) about
// a quarter of Append; the first touches of the new memory a segment's
// points still need (none when a deleted segment's list is reused, as a log
// with retention does); the cache ring slot each entry fills (48 bytes,
// last touched a TailCacheBytes ago, so a cache miss, about an eighth of
// Append in perf); reading the caller's batch header (the first touch of
// each entry's bytes); the frame header's CRC. BenchmarkAppendSyncSplit at
// load 1.45 (100 batches, 4 KiB interval): 1 KiB log-frame-us 183, writes
// 174 against 183, fdatasync 144 against 150, other threads 40 against 41.
// The log's pwrite reads its chunk from the processor's cache and costs no
// more than the baseline's write of its prebuilt batch. The fdatasync,
// about 1 ms on a quiet disk and 2-2.5 ms when another session writes, is
// the same for both and decides most of the spread between runs. With both
// changes (300 batches, load 0.6-1.2, 17:46 UTC): 100 B log-frame-us 71,
// fdatasync wall 970 against 920 us; 1 KiB log-frame-us 178, writes 210
// against 202, fdatasync wall 1,948 against 1,805 us, other threads 103
// against 77; 64 KiB log-frame-us 5,142 (the copy), writes 12.7 against
// 11.7 ms, fdatasync CPU 3.3 against 2.5 ms and wall 56.8 against 53.0 ms,
// other threads 2.6 against 2.1 ms. The 64 KiB fdatasync difference is not
// explained yet: a roll every fourth batch adds a small fdatasync of the
// new segment's header (counted there), too small for 4 ms a batch.
//
// Session 5: the bytes of an entry pass through memory once in the log,
// copied from the caller into a chunk, where the baseline's kernel copy
// reads them from the caller; the kernel's copy into the page cache then
// reads the log's chunk while it is still in the processor's cache, which
// made the log's pwrite about 2 ms per 64 MiB cheaper than the baseline's
// write. So the copy should be the only extra pass: from 768 bytes the
// payload is copied and checksummed in one pass (crc.go: fold512 stores
// what it loads and folds 256 bytes per step with AVX-512 VPCLMULQDQ;
// elsewhere the standard library's SSE4.2 CRC32C, about 25 GB/s, follows
// the copy). An Append call larger than the tail cache writes everything
// before its last TailCacheBytes through one reused chunk (writer.go,
// write-through) instead of through chunks last touched a TailCacheBytes
// ago. A roll writes the index file in 64 KiB pieces from a pooled buffer,
// not as a new 2 MiB buffer, and a new segment reuses a deleted segment's
// point list. BenchmarkAppendCPU, cpu-ns/entry (it deletes nothing, so its
// point lists are new memory), before and after, load 2-3: 100 B 49-52 ->
// 48-50, 1 KiB 134-149 -> 103-116, 64 KiB 6,050-6,990 -> 3,220-3,610; log
// CPU per 64 KiB batch in the interleaved benchmark 26.6-32.3 -> 18.6-24.2
// ms (the baseline's 13.3-19.4). What was left at 64 KiB was the copy
// itself (about 4.9 ms per 64 MiB, at memory bandwidth, less the 2 ms the
// kernel's copy saves reading it cached); session 8 removed it for the
// entries written through (below).
//
// Session 8: write-through by vector (vector.go). A 64 MiB call writes its
// entries before the last TailCacheBytes through, and nothing reads them
// from memory again, so where the file has a descriptor Append no longer
// copies them: it builds each frame's header and stamped batch header in
// a small stage, computes the CRC32C over those and over the caller's
// payload in place (a read-only pass), and writes groups of about 2 MiB
// with one pwritev each (header pieces from the stage, payloads from the
// caller's memory), right after their CRCs, while they are cached. The
// files are byte-identical to the copying path's (tested). The group size
// is what decides: the kernel's cost of a write call is more than its
// copy, so per 64 MiB of 64 KiB pieces the write calls cost 14.5 ms of CPU
// in 256 KiB groups, 9.5 in 512 KiB, 7.2-8.0 in 1 MiB, 6.6 in 2 MiB and
// 6.5 in 4 MiB, against 9.4 ms for plain 1 MiB writes from memory (a
// stand-alone probe; see vecGroupBytes), which is why a 256 KiB copying
// chunk measured worse (Tried and left out). A first probe of the
// interleaved benchmark at 64 KiB, one or two runs per setting at load
// 0.9-1.7, ratio-% and the log's extra CPU per batch: copying 90.2 and
// 91.5 (5.2 and 4.7 ms), 2 MiB groups 93.1 and 94.9 (3.4 and 2.6 ms),
// 4 MiB 83.7 (10.3 ms, with median-ratio-% 93.2: a burst of load). Four
// alternated runs of each build (2026-11-23 20:12-20:27 UTC, load 0.7-1.5
// at the start of each; the code of 8a8429d against 2 MiB groups),
// ratio-% (median-ratio-%) and log / baseline CPU per batch:
//
//	        before                                          after
//	64 KiB  89.7 (90.4) 91.6 (92.0) 91.5 (92.7) 89.8 (91.3)  92.8 (93.6) 93.3 (94.3) 92.9 (93.9) 93.5 (95.0)
//	        21.1/16.2 23.6/19.4 22.0/17.1 21.3/16.0 ms      19.4/16.2 21.3/18.3 21.2/18.1 19.6/16.0 ms
//
// The log's extra CPU per 64 KiB batch went from 4.2-5.3 ms to 3.0-3.6
// ms, and ratio-% reached 90 in every run (before: 2 of 4). Those runs had
// the vector state in the middle of Log; with it at the end (as
// committed), one more run at load 1.5: 93.4 (94.5), 18.6/15.9 ms (its
// paired run of the old build could not be taken that night). Allocations
// stay 11 per 1,000 entries (the stage and the piece lists are allocated
// once per log). 100 B and 1 KiB calls are below the tail cache and never
// write through; their code path is unchanged. Four more alternated runs
// at those sizes with the final layout (20:27-20:28 UTC, load 1.8-2.0),
// ratio-% before -> after: 100 B 78.1, 92.6, 98.7, 90.6 -> 89.8, 92.9,
// 89.7, 99.6 (the log's extra CPU per batch 34-61 -> 39-79 us); 1 KiB
// 88.4, 91.5, 87.7, 83.0 -> 88.7, 92.0, 84.9, 90.5 (125-158 -> 103-132
// us): the noise of the disk. BenchmarkAppendCPU (in-memory files, so
// the copying path: it does not measure the vector) three runs each,
// cpu-ns/entry: 100 B 43.0, 42.9, 41.5 -> 43.0, 40.8, 40.4; 1 KiB 80.6,
// 90.9, 77.6 -> 96.4, 73.2, 72.7; 64 KiB 3,469, 3,156, 2,985 -> 3,384,
// 3,032, 2,589.
//
// Tried and left out. Writing through in 256 KiB pieces (a chunk that stays
// in the L2 cache) measured worse, ratio-% at 64 KiB 81 against 89 in the
// same runs (session 8 found why: a 256 KiB write call costs the kernel
// far more per byte than a larger one, see above), and through a 4 MiB
// chunk (fewer writes) worse too, 84-86 against 89, with more CPU per
// batch (22 against 19 ms). A background
// flusher (a goroutine writing each full chunk while Append framed the
// next; commit eefb4bd, with tests for its error paths): each hand-off
// costs a goroutine wake-up, tens of microseconds of CPU
// (BenchmarkAppendCPU 1 KiB 192 -> 277 ns/entry, 64 KiB 5.7 -> 9.7 us), and
// over eight rounds of A/B runs ratio-% moved within the noise (on average
// -1 point at 1 KiB, +2 at 64 KiB); it can only pay where a core is idle
// for it. Session 7, at 1 KiB, log-frame-us in alternated runs: mapping the
// point list's pages ahead in one call (madvise MADV_POPULATE_WRITE,
// 0.8-1.9 us a page) changed nothing measurable, since on this VM the first
// touch of a populated page still costs about 8 us (measured on fresh
// anonymous memory); clearing the ring slots an Append will fill before
// framing (to take their cache misses in one pass) changed nothing either.
// Transparent huge pages for the list did not take on Go heap memory.
//
// Preallocation was first measured for throughput (large batched writes)
// and did not help there: for 1,000-entry batches, writing into
// zero-filled or fallocated space synced no faster than appending. For
// small appends it does (see Preallocation). Starting the write-back of
// written data before Sync does pay for large Appends (see Write-back).
// Reads: BenchmarkRead and
// BenchmarkReadBatches (tail cache and disk), BenchmarkOpen1GiB (recovery
// with intact and with deleted index files), all in
//
//	go test ./segmentlog -run '^$' -bench 'Read|Open1GiB' -benchtime 3x
//
// The page cache (session 10, 2026-11-24). On the 2-core virtual machine
// the figures come from, a page the kernel has not used for a while costs
// far more to fill than one it has just freed: dd of 1,000 MiB into a new
// file wrote 0.6-1.5 GB/s, and 7.7 GB/s right after a file of the same
// size was deleted. In a 3-broker raftmq run at 1 KiB records
// (`raftmq bench produce --size 1024`), the kernel's copy into the page
// cache (copy_folio_from_iter_atomic, under this log's pwrite) was 28% of
// all CPU samples of the machine (perf record -a, 2 s of steady state);
// in the disk baseline (`--systems disk`), 68%. Two ways of writing that
// keep the page cache small were tried and left out:
//
//   - After each Sync, posix_fadvise(DONTNEED) of the active segment's
//     synced bytes older than its last 32 MiB, so that the next writes
//     reuse the pages just freed. A Python loop of 1 MiB writes, each
//     fdatasynced, went from 395 to 739 MB/s and from 0.52 to 0.17 cores
//     of system time, and in raftmq at 1 KiB the copy fell from 28% to 2%
//     of the samples. But raftmq's throughput moved within its noise:
//     two alternated pairs at 1 KiB 133/137 -> 145/148 MB/s, five at
//     100 B 0.89-1.10M -> 0.91-1.13M records/s, the whole process's CPU
//     for 2M records of 100 B 2.8-3.6 s either way, and at a fixed
//     400,000 records/s p99 8.2/11.9 -> 11.7/23.7 ms. Later the same
//     hour the copy was 2% of the samples without the advice too: how
//     much the page cache costs depends on the machine's state.
//   - Writing with pwritev2(RWF_DONTCACHE) (Linux 6.14 and later; ext4
//     supports it here): the kernel drops the pages once written back.
//     At 100 B, three alternated pairs: 0.93-1.16M -> 0.90-0.95M records/s;
//     probably (not measured) because a Sync that ends inside a page
//     leaves the rest of that page to the next write, which must then
//     read the dropped page back first.
//
// # Write-back
//
// Once WritebackBytes (default 4 MiB) were written to the active segment
// since its last Sync, the log has the kernel start writing them to the
// disk (sync_file_range(SYNC_FILE_RANGE_WRITE) over the bytes written
// since the last start, through the file's descriptor, as vector.go
// writes), and again every WritebackBytes after. The disk then writes a
// large Append's data while Append frames and writes the rest, and the
// Sync that follows waits only for the last few MiB. The call only
// queues pages for writing (it blocks only while the device's request
// queue is full): it does not wait for the write-back started
// before (SYNC_FILE_RANGE_WAIT_BEFORE, which pebble's vfs.File.SyncTo
// adds, would hold up Append, and with it a Raft leader's sends to its
// followers, on a busy disk), and it does not check for write-back errors
// (a waiting call would take a failed write-back's error, which the
// kernel reports once per open file, from the next fdatasync, and a Sync
// could then report the entries durable). It is only a hint: durability
// is Sync's fdatasync. A failed start is a write failure (sticky); a
// platform or file system without the call, or a file without a
// descriptor (the in-memory file system), has no write-back. A Sync's own
// flush starts none, nor do Syncs of less than WritebackBytes each: most
// of the broker's (a few batches of at most 1 MiB per Sync) do not; a
// follower catching up by many MiB between Syncs does.
//
// Measured with the interleaved benchmark at 64 KiB (64 MiB per Sync; 100
// batches per run, 2026-11-25, alternated): ratio-% without it 91.8,
// 90.9, 90.4, 89.9; with vfs.File.SyncTo (SYNC_FILE_RANGE_WAIT_BEFORE
// too) every 4 MiB 107.8, 106.5, 101.9, 102.0, every 1 MiB 96.6, 98.3,
// every 16 MiB 100.4, 97.9; with the same call made by a goroutine, so
// that Append did not wait, 98.1, 90.0, 96.9 (median-ratio-% 101.7, 98.3,
// 100.9), against SYNC_FILE_RANGE_WRITE alone, made by Append, 98.8,
// 98.2, 97.1 (median-ratio-% 106.9, 106.0, 104.2) in the same runs. The
// baseline's disk is idle while it writes, the log's is not. An earlier
// try (every 1 MiB chunk, recorded in commit 926cd24, another machine)
// spent as long blocked in the calls as it took off the fdatasync, and
// was left out; why it pays now is not settled. 100 B and 1 KiB batches
// (100 KB and 1 MB per Sync) never start it.
//
// # Preallocation
//
// An fdatasync that finds the file's size changed must also commit the
// inode (on ext4 a journal commit); one that writes below the file's size
// does not. Measured on the benchmark VM (ext4 on virtio, 2026-11-23, by
// the lead with a 160-byte pwrite and fdatasync per operation, p50/p99 in
// us): appending 235-303/420-608 alone, 305-307/586-616 with three files
// in parallel; overwriting zero-filled space 145-150/290-335 and
// 255-264/557-570; after fallocate mode 0 (size-extending) 143-161/354-410
// and 255-260/525-602; fallocate with FALLOC_FL_KEEP_SIZE (what Pebble's
// vfs.File.Preallocate does) 245-249/445-460 and 311-313/621-700, no
// better than appending, since the size still grows with every write.
//
// So the log keeps the active segment's file Options.PreallocateBytes
// (default 4 MiB) ahead of its data with a size-extending fallocate: when
// a write passes the file's end, the file grows to the write's end plus
// PreallocateBytes, rounded up to 4 KiB, at most to SegmentMaxBytes; a new
// segment gets its first step before its header is synced. Only the Sync
// after a step pays for the size change: with 100 B entries one in about
// 30,000. It pays only while Syncs are small: writing into preallocated
// (unwritten) space, the first write to a block converts it to written,
// a metadata change the fdatasync commits like a size change, so the gain
// comes from Syncs that write into the block the previous Sync wrote. So
// the log extends the file ahead only while the Syncs write at most
// 16 KiB on average (weight 1/8 per Sync); with larger Syncs it appends
// as before (and a roll still cuts what was preallocated). Never the whole segment
// up front: a broker has an active segment per partition, each reserves
// at most PreallocateBytes (plus 4 KiB) beyond its data. A roll cuts the
// sealed segment to its last frame before syncing it. Files without a
// descriptor (tests' in-memory and error-injecting file systems) are
// extended by writing zeros instead, at most 64 KiB ahead, and are never
// cut; on a file system
// without fallocate (EOPNOTSUPP) the log appends, silently; other
// fallocate failures (no space) leave the write to report its own error.
//
// Measured with BenchmarkClusterSegmentlogLatency (3 nodes, one proposal
// at a time, every log on the same ext4 disk; 2026-11-23, load 0.1-1.4;
// the baselines append to a growing file, as the log did before; measured
// before the 16 KiB rule below, which leaves such small Syncs alone), six
// alternated runs of each build at 100 B, p50-vs-fsync (commit p50 over
// the same run's single appending fdatasync p50): off 1.85, 1.87, 1.74,
// 1.85, 1.84, 1.56 -> on 1.64, 1.57, 1.76, 1.59, 1.57, 1.50; the commit
// p50 over the p50 of the second of three parallel appending fsyncs (the
// floor of a commit without preallocation): off 1.10, 1.30, 1.06, 1.13,
// 1.14, 1.21 -> on 0.99, 0.96, 0.99, 0.95, 0.93, 0.93. Absolute p50 varied
// with the disk from run to run (368-782 us off, 348-746 us on). At
// 64 KiB, three runs each, p50-vs-fsync 2.44, 2.22, 2.19 -> 2.26, 2.15,
// 2.27: no change (a 64 KiB entry's own write-back dominates its sync).
//
// Preallocating for every Sync size (before the 16 KiB rule) cost
// throughput: the interleaved benchmark (1,000 entries per Sync; the
// baseline appends to a growing file), four alternated runs each at load
// 0.2-2.7, ratio-% off -> on: 100 B 92.8, 95.1, 89.6, 88.7 -> 76.0, 94.0,
// 85.0, 75.4; 1 KiB 85.1, 81.5, 79.3, 79.7 -> 75.7, 81.4, 74.3, 85.8;
// 64 KiB 89.1, 90.7, 81.8, 89.7 -> 85.9, 84.7, 80.4, 80.2.
// With the rule, two alternated runs each (load 1.5-2.6), off -> on:
// 100 B 95.3, 95.4 -> 92.9, 87.2; 1 KiB 78.8, 87.8 -> 77.4, 83.6; 64 KiB
// 89.1, 90.3 -> 89.9, 89.5 (at 100 B and 1 KiB a timed batch of the
// log now appends exactly as before; the differences are the machine's
// noise, as the spread of the off runs shows). The latency benchmark with
// the rule, three more alternated pairs at 100 B, but on a busier disk
// (load 1.5-2.5, fsync p99 3-5 ms from other processes): p50-vs-fsync off
// 1.59, 1.70, 1.72 -> on 1.61, 1.64, 1.72, commit p50 over the 2-of-3
// floor 0.97, 1.02, 1.02 -> 0.96, 0.98, 1.01: the gain drowns in a busy
// disk's queue. Three more pairs once the disk was quiet again (fsync p99
// 0.5-0.7 ms; load 0.9-2.0 from CPU): p50-vs-fsync 1.94, 1.89, 1.88 ->
// 1.60, 1.63, 1.60; over the floor 1.18, 1.16, 1.15 -> 1.03, 0.99, 1.00.
//
// # Concurrency
//
// One writer goroutine calls Append, TruncateAfter, Reset, ResetOffsets;
// Sync, DeleteBefore and ApplyRetention may be called from any goroutine,
// concurrently with the writer. Any number of goroutines may read
// (Entries, Term, FirstIndex, LastIndex, ReadBatches, IndexOfOffset, ...)
// at the same time. Recent entries come from the tail cache without I/O:
// Entries returns Data that alias the cached frames (no copy; a chunk
// Entries has handed out is never reused, see cache.go), ReadBatches
// copies them into the caller's buffer. Older entries are read with one
// positional read of the span a call needs, which never blocks Append (a
// reader only waits for a truncation, reset or segment deletion). Entries
// reads into a new buffer its results alias; ReadBatches (and
// IndexOfOffset) read into a read window from a sync.Pool and ReadBatches
// copies the batches into the caller's buffer, walking the segment once
// from the index point before fromOffset, so a steady consumer reading
// from disk allocates nothing per call (BenchmarkReadBatches/disk: 0
// allocs/op; 3 allocs and ~1.8 bytes per byte served before). Returned
// entry Data must not be modified; it stays valid and unchanged forever,
// whatever is appended or truncated later.
//
// The vfs.FS must allow a write to a file concurrent with an fdatasync of
// it (vfs.Default and the in-memory FS do), and must not modify buffers
// passed to WriteAt.
package segmentlog
