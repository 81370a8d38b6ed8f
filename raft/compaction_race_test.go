package raft

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// racyLog is a segmentlog whose prefix deletion (the broker's retention,
// which runs on its own goroutine) happens at the one moment the leader's
// core has checked FirstIndex and reads the entries a slow follower lacks.
type racyLog struct {
	*segmentlog.Log
	cut   atomic.Uint64 // when not 0: delete before it at the next read below it
	fired atomic.Bool
}

func (l *racyLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	if cut := l.cut.Load(); cut != 0 && lo < cut && l.fired.CompareAndSwap(false, true) {
		// Retention, concurrently: its snapshot exists and was reported
		// (SnapshotTaken), so it deletes the covered segments now.
		if _, err := l.Log.DeleteBefore(cut); err != nil {
			panic(err)
		}
	}
	return l.Log.Entries(lo, hi, maxBytes)
}

// TestLeaderSendsSnapshotWhenRetentionDeletesTheEntriesItWasReading: the
// owner deletes a log prefix (the broker's retention, on its own goroutine)
// between the leader core's FirstIndex check in sendAppend and its read of
// the entries a lagging follower needs. The entries were compacted away:
// the leader sends a snapshot (§7) and the follower catches up; the group
// does not stop on the failed read (LogStorage: compaction).
func TestLeaderSendsSnapshotWhenRetentionDeletesTheEntriesItWasReading(t *testing.T) {
	sc := newSnapshotCluster(t, true)
	leader := sc.leader()
	lagging := sc.otherFollower(leader, 0)
	sc.propose(20, "before")
	sc.waitConverged()
	sc.stop(lagging)
	sc.propose(200, "while-stopped")
	leader = sc.leader()
	n := sc.nodes[leader]

	// The leader's retention: snapshot as of its applied index, reported.
	last, data := n.fsm.state()
	term, err := n.log.Term(last)
	if err != nil {
		t.Fatal(err)
	}
	meta := snapshot.Meta{Index: last, Term: term, Configuration: snapshot.Configuration{Voters: sc.ids}}
	w, err := n.store.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(w).Encode(data); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	sc.group(leader).SnapshotTaken(meta)

	// Restart the leader's group on the racy log (same files), with a
	// tiny entry window so a slow follower's entries are read from the log.
	sc.stop(leader)
	seg := n.log.(*segmentlog.Log)
	racy := &racyLog{Log: seg}
	n.log = racy
	cfg := DefaultGroupConfig()
	cfg.GroupID, cfg.Voters = 1, sc.ids
	cfg.ElectionTimeout, cfg.HeartbeatInterval = 100*time.Millisecond, 10*time.Millisecond
	cfg.MaxAppendBytes = 512
	cfg.EntryWindowBytes = 1
	cfg.Log, cfg.Stable, cfg.StateMachine, cfg.Snapshots = racy, n.stable, n.fsm, n.store
	cfg.Applied, _ = n.fsm.state()
	g, err := sc.hosts[leader].AddGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc.groups.Store(leader, g)
	want := leader
	for attempt := 0; sc.leader() != want; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = sc.group(sc.leader()).TransferLeadership(ctx, want)
		cancel()
		if attempt > 20 {
			t.Fatal("leadership never moved back to the racy node")
		}
	}
	leader = want
	// Deletion point: the first index of the segment holding the
	// snapshot's index, as retention computes it (a segment boundary).
	racy.cut.Store(meta.Index)
	sc.start(lagging)

	waitFor(t, 10*time.Second, "the retention race to happen", func() bool { return racy.fired.Load() })
	select {
	case <-g.Stopped():
		t.Fatalf("leader's group stopped after retention raced its read for the slow follower: %v", g.Err())
	case <-time.After(2 * time.Second):
	}
	sc.propose(5, "after")
	sc.waitConverged()
}

// compactingLog is a memLog whose prefix before cut is deleted at the next
// read of an index below cut (retention racing the read), and whose reads
// of index broken fail with an I/O error.
type compactingLog struct {
	*memLog
	cut, broken uint64
}

var errBrokenRead = errors.New("compactingLog: read failed")

func (l *compactingLog) compactBefore(index uint64) {
	if l.cut == 0 || index >= l.cut {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	drop := l.cut - l.first
	l.prevTerm = l.ents[drop-1].Term
	l.ents = l.ents[drop:]
	l.first = l.cut
	l.cut = 0
}

func (l *compactingLog) Term(index uint64) (uint64, error) {
	l.compactBefore(index + 1)
	if index == l.broken {
		return 0, errBrokenRead
	}
	return l.memLog.Term(index)
}

func (l *compactingLog) Entries(lo, hi, maxBytes uint64) ([]protocol.Entry, error) {
	l.compactBefore(lo)
	if lo <= l.broken && l.broken < hi {
		return nil, errBrokenRead
	}
	return l.memLog.Entries(lo, hi, maxBytes)
}

// TestOnlyAReadOfCompactedEntriesMayFailWithoutStoppingTheGroup: a failed
// read that started below the log's FirstIndex, re-read after the failure,
// lost a race with a prefix deletion: for a follower's entries it reports
// them compacted (the leader sends a snapshot) and is no error. Any other
// failed read, and any failed read of entries the core needs itself, is a
// storage error that stops the group (LogStorage: compaction).
func TestOnlyAReadOfCompactedEntriesMayFailWithoutStoppingTheGroup(t *testing.T) {
	newLog := func(cut, broken uint64) *raftLog {
		return &raftLog{storage: &compactingLog{memLog: logWith(1, 1, 1, 2, 2, 2, 3, 3, 3, 3), cut: cut, broken: broken}}
	}

	l := newLog(6, 0)
	if term, compacted := l.termUnlessCompacted(3); !compacted || term != 0 || l.err != nil {
		t.Fatalf("term of 3 deleted during the read: term %d, compacted %v, err %v", term, compacted, l.err)
	}
	l = newLog(6, 0)
	if ents, compacted := l.appendEntries(2, 9, 1<<20); !compacted || ents != nil || l.err != nil {
		t.Fatalf("entries [2, 9) deleted during the read: %d entries, compacted %v, err %v", len(ents), compacted, l.err)
	}
	l = newLog(6, 0)
	if index, term := l.findConflictByTerm(8, 1); index != 4 || term != 0 || l.err != nil {
		// 8..5 have terms 3, 3, 2, 2; 4 was deleted under the scan.
		t.Fatalf("conflict hint scan with 4 deleted during it: index %d term %d, err %v", index, term, l.err)
	}

	// An error that is not a deletion: the read's start is still held.
	l = newLog(0, 7)
	if _, compacted := l.termUnlessCompacted(7); compacted || !errors.Is(l.err, errBrokenRead) {
		t.Fatalf("failed read of term 7 (held): compacted %v, err %v", compacted, l.err)
	}
	l = newLog(3, 7)
	if _, compacted := l.appendEntries(4, 9, 1<<20); compacted || !errors.Is(l.err, errBrokenRead) {
		t.Fatalf("failed read of [4, 9) (held after deleting before 3): compacted %v, err %v", compacted, l.err)
	}

	// Reads the core does for itself: entries to apply, term lookups.
	l = newLog(6, 0)
	if ents := l.entries(2, 9, 1<<20); ents != nil || l.err == nil {
		t.Fatalf("own read of [2, 9) deleted during it: %d entries, err %v", len(ents), l.err)
	}
	l = newLog(6, 0)
	if l.term(3); l.err == nil {
		t.Fatal("own read of the term of 3, deleted during it: no error")
	}
}
