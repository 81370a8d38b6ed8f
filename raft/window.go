package raft

import (
	"sort"
	"unsafe"

	"github.com/raftmq/raftmq/protocol"
)

// The entry window: the driver's memory of the entries it appended last.
//
// The leader replicates and applies entries it has just appended, and a
// follower applies entries it has just received. Reading them back from
// LogStorage costs a lock, a search and usually a copy (or a pread) per
// call; the window keeps the newest entries appended through it, by
// reference, and serves Term and Entries for them. Older entries (a slow
// follower, a restarted node, entries that did not fit) come from the log.
//
// It keeps the very slices Append is given, one run per Append, without
// copying them: the driver never modifies a ready's entries once it handed
// them to persistReady (the core hands its unstable array over and starts
// a new one; a follower's entries alias a received message). A read
// returns a capacity-limited part of one run (see Entries).
//
// What the window serves is always what the log holds at that index:
//   - every write to the log in [FirstIndex, LastIndex] after the window
//     is made goes through it (Append, TruncateAfter) and changes the
//     window the same way;
//   - the two writes that bypass it, a prefix deletion (compaction) and a
//     reset after a snapshot install (LogResetter), leave every index the
//     window still holds either below the log's FirstIndex or above its
//     LastIndex; the window serves an index only inside
//     [FirstIndex, LastIndex], asked of the log at each call, and an
//     append that does not continue its last entry replaces it;
//   - a log that assigns record offsets at Append (offsetAssigner, as
//     segmentlog.Log does: docs/adr/0001) returns record batches with
//     their base offset stamped; the window stamps the same offset into
//     the batches this replica proposed, in place (Propose takes
//     ownership of them: see own), and into its own copy of any other
//     batch that does not carry it already (a follower's entries alias a
//     received message, whose bytes are not the window's to change); it
//     keeps nothing of an append when the log's NextOffset afterwards is
//     not what it computed.
//
// It is bounded by bytes of entry data: a full window takes no more
// entries (see Append) until release, which drops the entries the state
// machine was handed and every follower has, empties it; an idle group
// holds none. A run partly released keeps its array (and the data of its
// released entries) reachable until the rest of it is released.
//
// Only the goroutine running the group's core uses a window (Append and
// TruncateAfter come from persistReady on that goroutine); Sync passes
// through to the log and may run anywhere.
type entryWindow struct {
	LogStorage // FirstIndex, LastIndex and Sync pass through

	offsets offsetAssigner // nil when the log assigns no offsets
	// runs hold the window's entries, dense and in index order; runs[i]
	// starts at index runs[i][0].Index. Every run is non-empty and
	// capacity-limited.
	runs     [][]protocol.Entry
	start    uint64 // first index held (meaningful when runs is not empty)
	end      uint64 // index after the last one held
	bytes    uint64 // entry data held
	maxBytes uint64
	// full: the window took no more entries since it reached maxBytes;
	// it ends before the log does, until release empties it.
	full bool
	// ownedTail: the last run is the window's own array (see keep), and
	// entries may be appended to it in place, past its length.
	ownedTail bool

	// arena holds stamped copies of record batches; a batch larger than
	// arenaChunk/4 gets its own allocation.
	arena []byte

	// owned lists, in index order, the record batches this replica
	// proposed and has not appended yet (see own): their bytes belong to
	// Raft, and Append stamps them in place instead of copying them.
	owned []ownedBatch

	// hits and misses count Entries calls served from the window and
	// from the log (for tests and benchmarks).
	hits, misses uint64
}

// ownedBatch names a proposed record batch by its index and the first
// byte of its data: an entry appended at that index is that batch only if
// its data starts at that very byte (a follower's entry at the same index
// aliases a received message instead).
type ownedBatch struct {
	index uint64
	data  *byte
}

// own records that the record batches among ents (just proposed, Index
// set) are owned by Raft: Propose's caller hands over its buffer and never
// touches it again, so the window may stamp the base offset into it when
// it is appended instead of into a copy. Stamping happens before the
// entries are sent or applied (persistReady runs before either), so every
// reader sees the stamped bytes; followers then receive batches that
// carry their offset already and keep them as they are.
func (w *entryWindow) own(ents []protocol.Entry) {
	if w.offsets == nil {
		return
	}
	for i := range ents {
		if ents[i].Type == protocol.EntryRecordBatch && len(ents[i].Data) > 0 {
			w.owned = append(w.owned, ownedBatch{index: ents[i].Index, data: unsafe.SliceData(ents[i].Data)})
		}
	}
}

// offsetAssigner is the capability of a log that assigns record batch base
// offsets at Append (segmentlog.Log): NextOffset is the base offset the
// next record batch gets.
type offsetAssigner interface {
	NextOffset() uint64
}

// defaultWindowBytes is the default GroupConfig.EntryWindowBytes. With more
// than the window in flight (appended, not yet applied and acknowledged
// by every follower) the share served from memory is about the window over
// what is in flight, and the rest is read back from the log: on the 3-node
// segmentlog cluster with 16 MiB of 64 KiB entries in flight, CPU per
// entry was 8 MiB: 240-267 us, 16 MiB: 186-192 us, 32 MiB: 108-117 us.
// The memory is per busy group only: a window holds nothing but entries in
// flight and is empty once they are applied and acknowledged (an idle
// group holds nothing: TestHostIdleGroupWindowHoldsNothing), and a leader
// may have twice this much (MaxInflightBytes) unacknowledged per follower
// anyway. A broker with many partitions busy at once holds up to this
// much for each; set GroupConfig.EntryWindowBytes lower to bound that.
const defaultWindowBytes = 32 << 20

const arenaChunk = 1 << 20

func newEntryWindow(log LogStorage, maxBytes uint64) *entryWindow {
	w := &entryWindow{LogStorage: log, maxBytes: maxBytes}
	w.offsets, _ = log.(offsetAssigner)
	return w
}

// holds reports whether the window holds index.
func (w *entryWindow) holds(index uint64) bool {
	return len(w.runs) > 0 && index >= w.start && index < w.end
}

// run returns the position of the run holding index (which it holds).
func (w *entryWindow) run(index uint64) int {
	if last := len(w.runs) - 1; index >= w.runs[last][0].Index {
		return last // the common case: the newest entries
	}
	return sort.Search(len(w.runs), func(i int) bool { return w.runs[i][0].Index > index }) - 1
}

func (w *entryWindow) entry(index uint64) *protocol.Entry {
	r := w.runs[w.run(index)]
	return &r[index-r[0].Index]
}

// Term serves index from the window when the log holds it there.
func (w *entryWindow) Term(index uint64) (uint64, error) {
	if w.holds(index) && w.inLog(index, index+1) {
		return w.entry(index).Term, nil
	}
	return w.LogStorage.Term(index)
}

// inLog reports whether the log holds [lo, hi).
func (w *entryWindow) inLog(lo, hi uint64) bool {
	return lo >= w.LogStorage.FirstIndex() && hi <= w.LogStorage.LastIndex()+1
}

// Entries serves [lo, hi) from the window where it holds it and from the
// log before and after the window (a slow follower's reads, a full window).
// It may return fewer entries than maxBytes allows at one place only: a
// read stops at the end of a run inside the window, so that it returns a
// capacity-limited part of that run and copies nothing (runs are long; see
// smallRun). Every caller in the core goes on from where a read stopped
// (raftLog.entries, takeReady and sendAppend treat a short read like one
// cut by maxBytes). Reads across the window's edges copy the Entry headers
// (never the data) into a new slice, as the log itself would.
func (w *entryWindow) Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error) {
	if lo >= hi || len(w.runs) == 0 || lo >= w.end || hi <= w.start || !w.inLog(lo, hi) {
		w.misses++
		return w.LogStorage.Entries(lo, hi, maxBytes)
	}
	var out []protocol.Entry
	var size uint64
	if lo < w.start {
		w.misses++
		ents, err := w.LogStorage.Entries(lo, w.start, maxBytes)
		if err != nil || uint64(len(ents)) < w.start-lo {
			return ents, err
		}
		if size = dataSize(ents); size >= maxBytes {
			return ents, nil
		}
		out, lo = ents, w.start
	} else {
		w.hits++
	}
	r := w.runs[w.run(lo)]
	runEnd := r[0].Index + uint64(len(r))
	part := r[lo-r[0].Index : min(hi, runEnd)-r[0].Index]
	n, size := fitBytes(part, size, maxBytes, len(out) > 0)
	next := lo + uint64(n)
	if out == nil {
		if next < runEnd || runEnd < w.end || next == hi {
			return part[:n:n], nil
		}
	} else {
		// The log's part, then the window's: a new slice (ents belongs to
		// the log's caller, part to the window).
		out = append(out[:len(out):len(out)], part[:n]...)
		if next < runEnd || runEnd < w.end || next == hi {
			return out, nil
		}
	}
	// The read reached the window's end with room left: the rest comes
	// from the log.
	if out == nil { // size counts exactly what was taken: nothing broke the loop
		out = part[:n:n]
	}
	rest, err := w.LogStorage.Entries(next, hi, maxBytes-min(maxBytes, size))
	if err != nil {
		return nil, err
	}
	k := 0
	for k < len(rest) && size+uint64(len(rest[k].Data)) <= maxBytes {
		size += uint64(len(rest[k].Data))
		k++
	}
	if k == 0 {
		return out, nil
	}
	return append(out[:len(out):len(out)], rest[:k]...), nil
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
	// The offsets the log assigned: record batches this replica proposed
	// get theirs stamped in place (whether or not the window keeps them,
	// so that followers receive them stamped); the window keeps nothing
	// of an append whose offsets it cannot account for.
	offsetsOK := true
	if w.offsets != nil {
		offsetsOK = w.stampOwned(ents, nextOffset)
	}
	// Continue the window, replacing its suffix from first on; skip the
	// append while the window is full; otherwise (a new window, or the
	// log was reset) start over at first.
	first := ents[0].Index
	switch {
	case len(w.runs) > 0 && first > w.start && first <= w.end:
		w.truncate(first)
	case len(w.runs) > 0 && w.full && first > w.end:
		return nil
	default:
		w.clear()
		w.start, w.end = first, first
	}
	n, size := 0, uint64(0)
	for n < len(ents) && (w.bytes+size+uint64(len(ents[n].Data)) <= w.maxBytes || (n == 0 && len(w.runs) == 0)) {
		size += uint64(len(ents[n].Data))
		n++
	}
	run := ents[:n:n]
	if w.offsets != nil {
		if !offsetsOK {
			w.full = true
			return nil
		}
		run = w.stampRun(run, nextOffset)
	}
	if n < len(ents) {
		w.full = true
	}
	if n > 0 {
		w.keep(run)
		w.end += uint64(n)
		w.bytes += size
	}
	return nil
}

// smallRun is the fewest entries the window keeps by reference as a run
// of their own; fewer are copied into an array the window owns, where the
// next small appends join them. Reads stop at run boundaries, so runs of a
// few entries (a lightly loaded leader appends one or two per round)
// would otherwise make every AppendEntries to a catching-up follower and
// every batch applied that small.
const smallRun = 64

// keep adds run (dense, continuing the window) as a run of its own, or
// copies it onto the end of the window's own tail array.
func (w *entryWindow) keep(run []protocol.Entry) {
	if len(run) >= smallRun {
		w.runs = append(w.runs, run)
		w.ownedTail = false
		return
	}
	if last := len(w.runs) - 1; w.ownedTail && last >= 0 && len(w.runs[last])+len(run) <= cap(w.runs[last]) {
		// Only [0, len) of the array was ever handed out: writing past it
		// changes nothing a reader holds.
		w.runs[last] = append(w.runs[last], run...)
		return
	}
	// The array starts small and doubles while appends keep filling it,
	// up to 4*smallRun entries: a group that commits one entry at a time
	// empties the window after each and would otherwise allocate the
	// largest array for every entry.
	size := max(16, 2*len(run))
	if last := len(w.runs) - 1; w.ownedTail && last >= 0 {
		size = max(size, 2*cap(w.runs[last]))
	}
	owned := make([]protocol.Entry, 0, min(size, 4*smallRun))
	w.runs = append(w.runs, append(owned, run...))
	w.ownedTail = true
}

// stampOwned checks that the log assigned ents the offsets the window
// computes from nextOffset (the log's NextOffset before the append) and
// stamps those offsets into the record batches this replica owns (see
// own), in place. It returns false, stamping nothing, when the log's
// NextOffset after the append is not what the window computes or a batch
// header is unreadable. It forgets owned batches up to the last entry.
func (w *entryWindow) stampOwned(ents []protocol.Entry, nextOffset uint64) bool {
	offset := nextOffset
	for i := range ents {
		if ents[i].Type != protocol.EntryRecordBatch {
			continue
		}
		h, err := protocol.ReadBatchSummary(ents[i].Data)
		if err != nil {
			w.forgetOwned(ents[len(ents)-1].Index)
			return false
		}
		offset += uint64(h.RecordCount)
	}
	if w.offsets.NextOffset() != offset {
		w.forgetOwned(ents[len(ents)-1].Index)
		return false
	}
	offset = nextOffset
	k := 0
	for i := range ents {
		e := &ents[i]
		if e.Type != protocol.EntryRecordBatch {
			continue
		}
		h, _ := protocol.ReadBatchSummary(e.Data)
		for k < len(w.owned) && w.owned[k].index < e.Index {
			k++
		}
		if k < len(w.owned) && w.owned[k].index == e.Index && w.owned[k].data == unsafe.SliceData(e.Data) {
			protocol.StampBatch(e.Data, offset, h.AppendTime)
		}
		offset += uint64(h.RecordCount)
	}
	w.forgetOwned(ents[len(ents)-1].Index)
	return true
}

// forgetOwned drops the owned batches at or below index (appended, or
// replaced before they were).
func (w *entryWindow) forgetOwned(index uint64) {
	k := 0
	for k < len(w.owned) && w.owned[k].index <= index {
		k++
	}
	if k > 0 {
		n := copy(w.owned, w.owned[k:])
		clear(w.owned[n:])
		w.owned = w.owned[:n]
	}
}

// stampRun returns run with every record batch carrying the base offset
// the log assigned it, copying the run and the batches that lack it (the
// offsets are known to match the log's: see stampOwned).
func (w *entryWindow) stampRun(run []protocol.Entry, nextOffset uint64) []protocol.Entry {
	copied := false
	for i := range run {
		e := run[i]
		if e.Type != protocol.EntryRecordBatch {
			continue
		}
		h, _ := protocol.ReadBatchHeader(e.Data) // readable: stampOwned checked it
		if h.BaseOffset != nextOffset {
			if !copied {
				run = append([]protocol.Entry(nil), run...)
				run = run[:len(run):len(run)]
				copied = true
			}
			run[i].Data = w.stamp(run[i].Data, nextOffset, h.AppendTime)
		}
		nextOffset += uint64(h.RecordCount)
	}
	return run
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
	if len(w.runs) > 0 && index+1 <= w.end {
		w.truncate(index + 1)
	}
	return nil
}

// truncate drops the entries from index (at most end) on; the window then
// ends where the log does.
func (w *entryWindow) truncate(index uint64) {
	if index <= w.start {
		w.clear()
		return
	}
	if index >= w.end {
		w.full = false // the window ends where the log does
		return
	}
	for index < w.end {
		last := len(w.runs) - 1
		r := w.runs[last]
		if r[0].Index >= index {
			w.bytes -= dataSize(r)
			w.end = r[0].Index
			w.runs[last] = nil
			w.runs = w.runs[:last]
			continue
		}
		keep := index - r[0].Index
		w.bytes -= dataSize(r[keep:])
		// Capacity-limited: the dropped slots were handed out.
		w.runs[last] = r[:keep:keep]
		w.end = index
	}
	w.full, w.ownedTail = false, false
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
	if len(w.runs) == 0 || index < w.start {
		return
	}
	if index+1 >= w.end {
		w.clear()
		return
	}
	dropped := 0
	for w.start <= index {
		r := w.runs[dropped]
		runEnd := r[0].Index + uint64(len(r))
		if runEnd <= index+1 {
			w.bytes -= dataSize(r)
			w.runs[dropped] = nil
			dropped++
			w.start = runEnd
			continue
		}
		k := index + 1 - r[0].Index
		w.bytes -= dataSize(r[:k])
		w.runs[dropped] = r[k:]
		w.start = index + 1
	}
	if dropped > 0 {
		n := copy(w.runs, w.runs[dropped:])
		clear(w.runs[n:])
		w.runs = w.runs[:n]
	}
}

// windowUse is what a window holds: entries, their data bytes, and the
// capacity of its arena of stamped copies; and how many reads it served.
type windowUse struct {
	entries, bytes uint64
	arena          int
	hits           uint64
}

func (w *entryWindow) held() windowUse {
	u := windowUse{bytes: w.bytes, arena: cap(w.arena), hits: w.hits}
	if len(w.runs) > 0 {
		u.entries = w.end - w.start
	}
	return u
}

// clear drops every entry and lets the arrays go.
func (w *entryWindow) clear() {
	clear(w.runs)
	w.runs = w.runs[:0]
	w.start = w.end
	w.bytes, w.arena, w.full, w.ownedTail = 0, nil, false, false
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
