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
// It is bounded by bytes of entry data: a full window takes no more
// entries (see Append) until release, which drops the entries the state
// machine was handed and every follower has, empties it; an idle group
// holds none. Released slots of the current array keep their data
// reachable until the array is replaced (about twice the bound at most).
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
	// full: the window took no more entries since it reached maxBytes;
	// it ends before the log does, until release empties it.
	full bool

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

// Entries serves [lo, hi) from the window where it holds them and from
// the log before and after (a slow follower's reads, and a window that
// stopped taking entries when full).
func (w *entryWindow) Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error) {
	windowLo, windowHi := max(lo, w.start), min(hi, w.end())
	if lo >= hi || windowLo >= windowHi || !w.inLog(lo, hi) {
		w.misses++
		return w.LogStorage.Entries(lo, hi, maxBytes)
	}
	var out []protocol.Entry
	var size uint64
	if lo < windowLo {
		ents, err := w.LogStorage.Entries(lo, windowLo, maxBytes)
		if err != nil || uint64(len(ents)) < windowLo-lo {
			return ents, err
		}
		if size = dataSize(ents); size >= maxBytes {
			return ents, nil
		}
		// ents belongs to the log's caller: append only to a copy.
		out = ents[:len(ents):len(ents)]
	}
	out = w.cut(out, windowLo, windowHi, maxBytes, size)
	if windowHi == hi || out[len(out)-1].Index < windowHi-1 {
		if lo == windowLo {
			w.hits++
		}
		return out, nil
	}
	w.misses++
	size = dataSize(out)
	rest, err := w.LogStorage.Entries(windowHi, hi, maxBytes-min(maxBytes, size))
	if err != nil {
		return nil, err
	}
	n := 0
	for n < len(rest) && size+uint64(len(rest[n].Data)) <= maxBytes {
		size += uint64(len(rest[n].Data))
		n++
	}
	return append(out[:len(out):len(out)], rest[:n]...), nil
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

// Append appends to the log and keeps the entries while the window has
// room. A full window keeps its oldest entries (those the state machine
// and the followers read next) and takes no more until release empties
// it: dropping the oldest instead would, whenever more than the window is
// in flight, drop every entry just before it is read.
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
	// Continue the window, replacing its suffix from first on; skip the
	// append while the window is full; otherwise (a new window, or the
	// log was reset) start over at first.
	first := ents[0].Index
	switch {
	case len(w.ents) > 0 && first > w.start && first <= w.end():
		w.truncate(first)
	case len(w.ents) > 0 && w.full && first > w.end():
		return nil
	default:
		w.clear()
		w.start = first
	}
	kept := len(w.ents)
	for i := range ents {
		e := ents[i]
		var batch protocol.BatchHeader
		if w.offsets != nil && e.Type == protocol.EntryRecordBatch {
			h, err := protocol.ReadBatchHeader(e.Data)
			if err != nil {
				// The log accepted what the window cannot read: keep
				// nothing of this append.
				w.truncate(w.start + uint64(kept))
				w.full = true
				return nil
			}
			batch = h
		}
		if !w.full && w.bytes+uint64(len(e.Data)) > w.maxBytes && len(w.ents) > 0 {
			w.full = true
		}
		if !w.full {
			if batch.RecordCount > 0 && batch.BaseOffset != nextOffset {
				e.Data = w.stamp(e.Data, nextOffset, batch.AppendTime)
			}
			w.push(e)
		}
		nextOffset += uint64(batch.RecordCount)
	}
	if w.offsets != nil && w.offsets.NextOffset() != nextOffset {
		// The log assigned other offsets than the window computed.
		w.truncate(w.start + uint64(kept))
		w.full = true
	}
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
	if index+1 <= w.end() {
		w.truncate(index + 1)
	}
	return nil
}

// truncate drops the entries from index (at most end) on; the window then
// ends where the log does. The array is capacity-limited so that the next
// push copies instead of overwriting handed-out slots.
func (w *entryWindow) truncate(index uint64) {
	if index <= w.start {
		w.clear()
		return
	}
	keep := index - w.start
	w.bytes -= dataSize(w.ents[keep:])
	w.ents = w.ents[:keep:keep]
	w.full = false
}

// release drops the entries at or below applied (handed to the state
// machine) and at or below acked (every follower has them); while the
// window is full, everything applied goes, so that a follower that is down
// or far behind does not keep the window full for good (it reads from the
// log). When the window empties it takes entries again.
func (w *entryWindow) release(applied, acked uint64) {
	index := min(applied, acked)
	if w.full {
		index = applied
	}
	if len(w.ents) == 0 || index < w.start {
		return
	}
	n := min(index-w.start+1, uint64(len(w.ents)))
	if n == uint64(len(w.ents)) {
		w.clear()
		return
	}
	w.bytes -= dataSize(w.ents[:n])
	w.ents = w.ents[n:]
	w.start += n
}

// clear drops every entry and lets the arrays go.
func (w *entryWindow) clear() {
	w.start += uint64(len(w.ents))
	w.ents, w.bytes, w.arena, w.full = nil, 0, nil, false
}

// releaseWindow releases what the replica will not read again soon:
// entries handed to the state machine and, on a leader, acknowledged by
// every follower it replicates to.
func releaseWindow(w *entryWindow, c *core) {
	acked := c.handedOut
	if c.role == RoleLeader {
		for id, p := range c.progress {
			if id != c.id {
				acked = min(acked, p.match)
			}
		}
	}
	w.release(c.handedOut, acked)
}
