package raft

import "github.com/raftmq/raftmq/protocol"

// LogStorage is the Raft log a group persists its entries in. segmentlog.Log
// implements it directly. The driver calls Append, TruncateAfter and Sync;
// the core only reads. See the package documentation for who calls what from
// which goroutine.
//
// The driver serves the entries it appended last from memory (its entry
// window, window.go) and reads older ones from the log. So, while a group
// runs, nobody else may write the log except to delete a prefix
// (compaction) or through LogResetter; a log that assigns record offsets
// (NextOffset, as segmentlog.Log) must assign them as ADR 0001 says, which
// the window mirrors and checks after each Append.
//
// Compaction does not wait for the core: the owner may delete a prefix
// (segmentlog DeleteBefore, on its own goroutine) between the core's read
// of FirstIndex and its read of the entries after it. Term and Entries
// then fail (segmentlog.ErrOutOfRange). The core reads FirstIndex again
// after a failed read: where the read started below it, the entries were
// compacted away, which is not an error; a leader reading for a follower
// sends it a snapshot instead (etcd raft's ErrCompacted). Any other failed
// read, and a failed read of entries the core reads for itself (to apply
// them, to find its configuration), stops the group. FirstIndex must
// therefore never decrease except through LogResetter.
type LogStorage interface {
	// FirstIndex is the first index still held. For an empty log it is
	// LastIndex()+1 (a new log: FirstIndex 1, LastIndex 0).
	FirstIndex() uint64
	// LastIndex is the last appended index (appended, not necessarily durable).
	LastIndex() uint64
	// Term returns the term of an index in [FirstIndex-1 .. LastIndex]; for
	// FirstIndex-1 it returns the term recorded at the last Reset/prefix
	// deletion (0 for a new log). An error means I/O or corruption, or an
	// index a concurrent prefix deletion removed (see above).
	Term(index uint64) (uint64, error)
	// Entries returns entries [lo, hi) with total Data size at most
	// maxBytes, but always at least one entry when lo < hi. Returned
	// entries must not be modified and stay valid after later writes. It
	// fails, as Term does, for entries a concurrent prefix deletion removed.
	Entries(lo, hi uint64, maxBytes uint64) ([]protocol.Entry, error)
	// Append appends dense entries starting at LastIndex()+1. Buffered, not
	// durable. The caller's Data is never modified.
	Append(entries []protocol.Entry) error
	// TruncateAfter removes every entry with index > index (§5.3). The
	// removal is durable before anything appended after it is reported
	// durable.
	TruncateAfter(index uint64) error
	// Sync makes everything appended so far durable and returns the durable
	// last index. It may be called concurrently with Append. A failed sync
	// is sticky.
	Sync() (durableIndex uint64, err error)
}

// HardState is the state Raft must keep durably besides the log: the
// current term, the vote cast in it (§5.2, Figure 2), and a commit index
// hint (a lower bound of the commit index at the time of saving; it may lag).
type HardState struct {
	Term, Vote, Commit uint64
}

// IsZero reports whether h is the state of a replica that never ran.
func (h HardState) IsZero() bool { return h == HardState{} }

// StableStorage keeps a group's HardState. Save must be durable when it
// returns: the driver saves before sending any message that depends on the
// new term or vote.
type StableStorage interface {
	Load() (HardState, error)
	Save(HardState) error
}

// StateMachine receives committed entries, in log order, in batches, from
// one goroutine at a time per group. An error stops the group (the state
// machine is then behind the log and must be rebuilt on restart).
type StateMachine interface {
	Apply(entries []protocol.Entry) error
}
