package raft

import (
	"fmt"

	"github.com/raftmq/raftmq/protocol"
)

// LogReader is the read half of LogStorage, all the core needs.
type LogReader interface {
	FirstIndex() uint64
	LastIndex() uint64
	Term(index uint64) (uint64, error)
	Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error)
}

// raftLog is the core's view of the log: what storage holds plus the
// unstable tail the core has decided on but not yet handed to the driver.
// The driver appends that tail before it calls the core again, so storage
// and unstable never disagree about an index below unstableStart.
type raftLog struct {
	storage       LogReader
	unstable      []protocol.Entry
	unstableStart uint64 // index of unstable[0]; meaningful when unstable is not empty
	err           error  // first storage error; sticky
}

func (l *raftLog) firstIndex() uint64 { return l.storage.FirstIndex() }

func (l *raftLog) lastIndex() uint64 {
	if n := len(l.unstable); n > 0 {
		return l.unstable[n-1].Index
	}
	return l.storage.LastIndex()
}

// term returns the term of index, or 0 when index is outside the log or
// storage failed (the error is kept in l.err and stops the group).
func (l *raftLog) term(index uint64) uint64 {
	t, _ := l.readTerm(index, false)
	return t
}

// termUnlessCompacted is term for a read that may race a prefix deletion
// (a leader reading for a follower: see compactedAway). compacted reports
// that index is below the log's FirstIndex-1, now or since the read, which
// is not an error: the caller sends a snapshot instead.
func (l *raftLog) termUnlessCompacted(index uint64) (term uint64, compacted bool) {
	return l.readTerm(index, true)
}

func (l *raftLog) readTerm(index uint64, mayBeCompacted bool) (uint64, bool) {
	if n := len(l.unstable); n > 0 && index >= l.unstableStart {
		if index-l.unstableStart < uint64(n) {
			return l.unstable[index-l.unstableStart].Term, false
		}
		return 0, false
	}
	if first := l.storage.FirstIndex(); index+1 < first || index > l.storage.LastIndex() {
		return 0, index+1 < first
	}
	t, err := l.storage.Term(index)
	if err != nil {
		if mayBeCompacted && l.compactedAway(index+1) {
			return 0, true
		}
		l.fail(fmt.Errorf("raft: log term of index %d: %w", index, err))
		return 0, false
	}
	return t, false
}

// compactedAway reports whether a storage read from index on that failed
// lost a race with a prefix deletion: index is below FirstIndex now. The
// owner of the log deletes its prefix on its own goroutine (the broker's
// retention, after SnapshotTaken) without waiting for the core, so
// FirstIndex may pass an index between the core's check of it and its
// read (see LogStorage). FirstIndex only grows while the core reads (the
// other change of it, a snapshot reset, runs on the core's goroutine).
func (l *raftLog) compactedAway(index uint64) bool {
	return index < l.storage.FirstIndex()
}

func (l *raftLog) lastTerm() uint64 { return l.term(l.lastIndex()) }

func (l *raftLog) fail(err error) {
	if l.err == nil {
		l.err = err
	}
}

// matchTerm reports whether the log holds index with the given term.
func (l *raftLog) matchTerm(index, term uint64) bool {
	if index > l.lastIndex() || index+1 < l.firstIndex() {
		return false
	}
	return l.term(index) == term
}

// isUpToDate reports whether a log ending at (lastIndex, lastTerm) is at
// least as up-to-date as this one (§5.4.1).
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	ourTerm := l.lastTerm()
	return lastTerm > ourTerm || (lastTerm == ourTerm && lastIndex >= l.lastIndex())
}

// entries returns [lo, hi) limited to maxBytes of data, at least one
// entry: entries the core reads for itself (to apply them, to find its
// configuration).
func (l *raftLog) entries(lo, hi, maxBytes uint64) []protocol.Entry {
	ents, _ := l.readEntries(lo, hi, maxBytes, false)
	return ents
}

// appendEntries returns the entries of an AppendEntries starting at lo
// and ending before hi: at least one, at most maxBytes as encoded
// (protocol.RaftEntrySize each, data included). A read that races a
// prefix deletion (see termUnlessCompacted) reports compacted, with no
// entries, when it failed because lo is below FirstIndex now.
func (l *raftLog) appendEntries(lo, hi, maxBytes uint64) (ents []protocol.Entry, compacted bool) {
	return l.readEntries(lo, hi, maxBytes, true)
}

// readEntries is entries, or appendEntries when forAppend is set.
func (l *raftLog) readEntries(lo, hi, maxBytes uint64, forAppend bool) ([]protocol.Entry, bool) {
	if lo >= hi {
		return nil, false
	}
	fit := fitBytes
	if forAppend {
		fit = fitEncoded
	}
	var out []protocol.Entry
	var size uint64
	if len(l.unstable) == 0 || lo < l.unstableStart {
		storageHi := hi
		if len(l.unstable) > 0 && storageHi > l.unstableStart {
			storageHi = l.unstableStart
		}
		ents, err := l.storage.Entries(lo, storageHi, maxBytes)
		if err != nil {
			if forAppend && l.compactedAway(lo) {
				return nil, true
			}
			l.fail(fmt.Errorf("raft: log entries [%d, %d): %w", lo, storageHi, err))
			return nil, false
		}
		if forAppend {
			// Storage counts data only: the entries' encoding may not
			// all fit.
			n, taken := fitEncoded(ents, 0, maxBytes, false)
			ents, size = ents[:n:n], taken
		}
		if uint64(len(ents)) < storageHi-lo || storageHi == hi {
			return ents, false
		}
		if !forAppend {
			size = dataSize(ents)
		}
		if size >= maxBytes {
			return ents, false
		}
		out, lo = ents, storageHi
	}
	start := lo - l.unstableStart
	end := min(hi-l.unstableStart, uint64(len(l.unstable)))
	part := l.unstable[start:end:end]
	n, _ := fit(part, size, maxBytes, len(out) > 0)
	if out == nil {
		return part[:n:n], false
	}
	return append(out, part[:n]...), false
}

// fitEncoded returns how many of ents fit in maxBytes, as encoded in an
// AppendEntries (protocol.RaftEntrySize), after size bytes already taken,
// and the size with them. At least one entry fits when nothing was taken
// yet (haveSome false), whatever its size: an entry larger than the limit
// goes alone (the owner bounds entries so that one fits a message).
func fitEncoded(ents []protocol.Entry, size, maxBytes uint64, haveSome bool) (int, uint64) {
	for n := range ents {
		next := size + uint64(protocol.RaftEntrySize(&ents[n]))
		if next > maxBytes && (n > 0 || haveSome) {
			return n, size
		}
		size = next
	}
	return len(ents), size
}

// fitBytes returns how many of ents fit in maxBytes of entry data after
// size bytes already taken (LogStorage's accounting, which the entry
// window keeps), and the size counted: that includes the first entry that
// did not fit, if any. At least one entry fits when nothing was taken yet
// (haveSome false), whatever its size.
func fitBytes(ents []protocol.Entry, size, maxBytes uint64, haveSome bool) (int, uint64) {
	n := 0
	for n < len(ents) {
		size += uint64(len(ents[n].Data))
		if size > maxBytes && (n > 0 || haveSome) {
			break
		}
		n++
	}
	return n, size
}

func dataSize(ents []protocol.Entry) uint64 {
	var n uint64
	for i := range ents {
		n += uint64(len(ents[i].Data))
	}
	return n
}

// append adds entries at the end of the log (the leader's own proposals).
func (l *raftLog) append(ents ...protocol.Entry) {
	if len(l.unstable) == 0 {
		l.unstableStart = ents[0].Index
	}
	l.unstable = append(l.unstable, ents...)
}

// truncateAndAppend replaces everything from ents[0].Index on with ents.
func (l *raftLog) truncateAndAppend(ents []protocol.Entry) {
	first := ents[0].Index
	switch {
	case len(l.unstable) > 0 && first == l.lastIndex()+1:
		// A plain append: the array only grows past what was handed out
		// (entries() returns capacity-limited slices; an unstable tail
		// that aliases a message has no spare capacity, so this copies),
		// so no earlier reader sees a change. Growing by doubling, a
		// follower that handles many AppendEntries in one round copies
		// each entry about twice (append's own growth, 1.25x for large
		// slices, copies it four or five times).
		if need := len(l.unstable) + len(ents); need > cap(l.unstable) {
			grown := make([]protocol.Entry, len(l.unstable), 2*need)
			copy(grown, l.unstable)
			l.unstable = grown
		}
		l.unstable = append(l.unstable, ents...)
	case len(l.unstable) > 0 && first >= l.unstableStart && first <= l.lastIndex()+1:
		l.unstable = append(l.unstable[:first-l.unstableStart:first-l.unstableStart], ents...)
	default:
		// Either the tail is already in storage (the driver truncates it
		// when it sees the first entry at or below its last index) or the
		// unstable tail is replaced entirely. ents belongs to a message
		// nobody modifies; alias it, capacity-limited so that a later
		// append copies instead of writing into the message.
		l.unstable = ents[:len(ents):len(ents)]
		l.unstableStart = first
	}
}

// takeUnstable hands the unstable tail to the driver, which appends it to
// storage (truncating first when it starts at or below storage's last index).
func (l *raftLog) takeUnstable() []protocol.Entry {
	ents := l.unstable
	l.unstable = nil
	return ents
}

// findConflict returns the index of the first entry of ents that the log
// does not hold with the same term, or 0 when the log holds them all (§5.3:
// only a conflicting entry truncates; a matching append never drops entries).
func (l *raftLog) findConflict(ents []protocol.Entry) uint64 {
	for i := range ents {
		if !l.matchTerm(ents[i].Index, ents[i].Term) {
			return ents[i].Index
		}
	}
	return 0
}

// findConflictByTerm returns the largest index at or below index whose term
// is at most term, and that term (§5.3 fast backtracking hint). When a
// prefix deletion races the scan, it returns the index it could not read
// (below FirstIndex now) with term 0: on a leader, the follower's next
// index then falls below FirstIndex and the follower gets a snapshot.
func (l *raftLog) findConflictByTerm(index, term uint64) (uint64, uint64) {
	if li := l.lastIndex(); index > li {
		index = li
	}
	first := l.firstIndex()
	for {
		t, compacted := l.termUnlessCompacted(index)
		if compacted || t <= term || index+1 <= first || l.err != nil {
			return index, t
		}
		index--
	}
}
