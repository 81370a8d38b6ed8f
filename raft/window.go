package raft

import (
	"github.com/raftmq/raftmq/protocol"
)

// The entry window: the driver's memory of the entries it appended last.
//
// The leader replicates and applies entries it has just appended, and a
// follower applies entries it has just received. Reading them back from
// LogStorage costs a lock, a search and usually a copy (or a pread) per
// call; the window keeps the newest entries appended through it, by
// reference, and serves Term and Entries for them. Older entries (a slow
// follower, a restarted node, entries that overflowed the window) come
// from the log.
//
// What the window serves is always what the log holds at that index:
//   - every write to the log in [FirstIndex, LastIndex] after the window
//     is made goes through it (Append, TruncateAfter) and changes the
//     window the same way; Append never writes into a slot it handed out
//     (a truncated window is capacity-limited, so the next append copies),
//     so returned slices stay valid and unmodified;
//   - the two writes that bypass it, a prefix deletion (compaction) and a
//     reset after a snapshot install (LogResetter), leave every index the
//     window still holds either below the log's FirstIndex or above its
//     LastIndex; the window serves an index only inside
//     [FirstIndex, LastIndex], asked of the log at each call, and an
//     append that does not continue its last entry replaces it;
//   - a log that assigns record offsets at Append (offsetAssigner, as
//     segmentlog.Log does: docs/adr/0001) returns record batches with
//     their base offset stamped; the window stamps the same offset into
//     its own copy (never into the caller's bytes) when the batch does not
//     carry it already, and drops what it kept of an append when the log's
//     NextOffset afterwards is not what it computed.
//
// It is bounded by bytes of entry data: entries are dropped oldest first
// when it overflows, and release drops the entries every replica has and
// the state machine was handed (windowFloor), so an idle group holds none.
// Dropped slots of the current array keep their data reachable until the
// array is replaced (at most about twice the bound).
//
// Only the goroutine running the group's core uses a window (Append and
// TruncateAfter come from persistReady on that goroutine); Sync passes
// through to the log and may run anywhere.
type entryWindow struct {
	LogStorage // FirstIndex, LastIndex and Sync pass through

	offsets  offsetAssigner // nil when the log assigns no offsets
	ents     []protocol.Entry
	start    uint64 // index of ents[0]
	bytes    uint64 // entry data held
	maxBytes uint64

	// arena holds stamped copies of record batches; a batch larger than
	// arenaChunk/4 gets its own allocation.
	arena []byte

	// hits and misses count Entries calls served from the window and
	// from the log (read by tests and benchmarks once the group stopped).
	hits, misses uint64
}

// offsetAssigner is the capability of a log that assigns record batch base
// offsets at Append (segmentlog.Log): NextOffset is the base offset the
// next record batch gets.
type offsetAssigner interface {
	NextOffset() uint64
}

// defaultWindowBytes bounds a group's entry window: more than a follower
// usually lags while the leader's pipeline is full at MaxAppendBytes, and
// more than one MaxApplyBytes batch, yet small for a broker with many busy
// partitions (an idle group holds nothing; see release).
const defaultWindowBytes = 8 << 20

const arenaChunk = 1 << 20

func newEntryWindow(log LogStorage, maxBytes uint64) *entryWindow {
	w := &entryWindow{LogStorage: log, maxBytes: maxBytes}
	w.offsets, _ = log.(offsetAssigner)
	return w
}

// end is the index after the window's last entry.
func (w *entryWindow) end() uint64 { return w.start + uint64(len(w.ents)) }

// Term serves index from the window when the log holds it there.
func (w *entryWindow) Term(index uint64) (uint64, error) {
	if index >= w.start && index < w.end() && w.inLog(index, index+1) {
		return w.ents[index-w.start].Term, nil
	}
	return w.LogStorage.Term(index)
}

// inLog reports whether the log holds [lo, hi).
func (w *entryWindow) inLog(lo, hi uint64) bool {
	return lo >= w.LogStorage.FirstIndex() && hi <= w.LogStorage.LastIndex()+1
}

// Entries serves [lo, hi) from the window, or from the log up to the
// window's first entry and from the window on.
func (w *entryWindow) Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error) {
	if lo >= hi || len(w.ents) == 0 || hi <= w.start || hi > w.end() || !w.inLog(lo, hi) {
		w.misses++
		return w.LogStorage.Entries(lo, hi, maxBytes)
	}
	if lo >= w.start {
		w.hits++
		return w.cut(nil, lo, hi, maxBytes, 0), nil
	}
	// A straddling read: the log's part, then the window's.
	w.misses++
	ents, err := w.LogStorage.Entries(lo, w.start, maxBytes)
	if err != nil || uint64(len(ents)) < w.start-lo {
		return ents, err
	}
	size := dataSize(ents)
	if size >= maxBytes {
		return ents, nil
	}
	// ents belongs to the log's caller: append to a copy-on-grow slice.
	return w.cut(ents[:len(ents):len(ents)], w.start, hi, maxBytes, size), nil
}

// cut appends window entries from lo (below hi) to out while their data,
// added to size, stays within maxBytes (at least one entry in all).
// Without out it returns a capacity-limited slice of the window itself.
func (w *entryWindow) cut(out []protocol.Entry, lo, hi, maxBytes, size uint64) []protocol.Entry {
	part := w.ents[lo-w.start : hi-w.start]
	n := 0
	for n < len(part) {
		size += uint64(len(part[n].Data))
		if size > maxBytes && (n > 0 || len(out) > 0) {
			break
		}
		n++
	}
	if out == nil {
		return part[:n:n]
	}
	return append(out, part[:n]...)
}

// Append appends to the log and keeps the entries.
func (w *entryWindow) Append(ents []protocol.Entry) error {
	if len(ents) == 0 {
		return w.LogStorage.Append(ents)
	}
	var nextOffset uint64
	if w.offsets != nil {
		nextOffset = w.offsets.NextOffset()
	}
	if err := w.LogStorage.Append(ents); err != nil {
		w.clear()
		return err
	}
	// Continue the window, replacing its suffix from first on, or, when
	// the append does not touch it (after a reset of the log), start over.
	first := ents[0].Index
	if len(w.ents) > 0 && first > w.start && first <= w.end() {
		if first < w.end() {
			w.truncate(first)
		}
	} else {
		w.clear()
		w.start = first
	}
	kept := len(w.ents)
	for i := range ents {
		e := ents[i]
		if w.offsets != nil && e.Type == protocol.EntryRecordBatch {
			h, err := protocol.ReadBatchHeader(e.Data)
			if err != nil {
				// The log accepted what the window cannot read: keep
				// nothing of this append.
				w.truncate(w.start + uint64(kept))
				return nil
			}
			if h.BaseOffset != nextOffset {
				e.Data = w.stamp(e.Data, nextOffset, h.AppendTime)
			}
			nextOffset += uint64(h.RecordCount)
		}
		w.push(e)
	}
	if w.offsets != nil && w.offsets.NextOffset() != nextOffset {
		// The log assigned other offsets than the window computed.
		w.truncate(w.start + uint64(kept))
	}
	w.shrinkTo(w.maxBytes)
	return nil
}

// push appends one entry, moving the live entries to a new array when the
// current one is full (never writing a slot handed out before).
func (w *entryWindow) push(e protocol.Entry) {
	if len(w.ents) == cap(w.ents) {
		grown := make([]protocol.Entry, len(w.ents), max(64, 2*len(w.ents)))
		copy(grown, w.ents)
		w.ents = grown
	}
	w.ents = append(w.ents, e)
	w.bytes += uint64(len(e.Data))
}

// stamp returns a copy of batch with baseOffset and appendTime stamped.
func (w *entryWindow) stamp(batch []byte, baseOffset uint64, appendTime int64) []byte {
	var out []byte
	if len(batch) > arenaChunk/4 {
		out = make([]byte, len(batch))
	} else {
		if len(batch) > cap(w.arena)-len(w.arena) {
			w.arena = make([]byte, 0, arenaChunk)
		}
		n := len(w.arena)
		w.arena = w.arena[: n+len(batch) : cap(w.arena)]
		out = w.arena[n : n+len(batch) : n+len(batch)]
	}
	copy(out, batch)
	protocol.StampBatch(out, baseOffset, appendTime)
	return out
}

// TruncateAfter truncates the log and the window.
func (w *entryWindow) TruncateAfter(index uint64) error {
	err := w.LogStorage.TruncateAfter(index)
	if err != nil {
		w.clear()
		return err
	}
	if index+1 < w.end() {
		w.truncate(index + 1)
	}
	return nil
}

// truncate drops the entries from index on. The array is capacity-limited
// so that the next push copies instead of overwriting handed-out slots.
func (w *entryWindow) truncate(index uint64) {
	if index <= w.start {
		w.clear()
		return
	}
	keep := index - w.start
	w.bytes -= dataSize(w.ents[keep:])
	w.ents = w.ents[:keep:keep]
}

// shrinkTo drops the oldest entries until the window holds at most
// maxBytes of data.
func (w *entryWindow) shrinkTo(maxBytes uint64) {
	n := 0
	for w.bytes > maxBytes && n < len(w.ents) {
		w.bytes -= uint64(len(w.ents[n].Data))
		n++
	}
	w.dropFront(n)
}

// release drops the entries at or below index: the driver passes
// windowFloor, below which nobody reads them soon.
func (w *entryWindow) release(index uint64) {
	if len(w.ents) == 0 || index < w.start {
		return
	}
	n := min(index-w.start+1, uint64(len(w.ents)))
	w.bytes -= dataSize(w.ents[:n])
	w.dropFront(int(n))
}

func (w *entryWindow) dropFront(n int) {
	if n == len(w.ents) {
		w.clear()
		return
	}
	w.ents = w.ents[n:]
	w.start += uint64(n)
}

// clear drops every entry and lets the arrays go.
func (w *entryWindow) clear() {
	w.start += uint64(len(w.ents))
	w.ents, w.bytes, w.arena = nil, 0, nil
}

// windowFloor is the highest index whose entry the replica will not read
// again soon: handed to the state machine and, on a leader, acknowledged
// by every follower it replicates to.
func windowFloor(c *core) uint64 {
	floor := c.handedOut
	if c.role == RoleLeader {
		for id, p := range c.progress {
			if id != c.id {
				floor = min(floor, p.match)
			}
		}
	}
	return floor
}
