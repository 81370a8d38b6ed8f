package raft

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// The proposals of a leader cut off from its followers resolve once its
// uncommitted tail is overwritten by the next leader's entries (with
// *NotLeaderError: their outcome is unknown here), without waiting for the
// commit index to pass them, and a proposal of the same node leading again
// resolves as committed when it commits. Before, the driver kept them
// pending: in an idle group they never resolved, and the new leader's
// proposals, queued behind them at lower indexes, hung after committing
// and then failed with ErrProposalDropped (Group.dropOverwritten).
func TestProposalsOfADeposedLeaderResolveWhenItsLogIsOverwritten(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	old := tc.leader(t)
	ctx := context.Background()
	g := tc.groups[old]
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("warm"), AckCommitted).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	tc.net.mu.Lock()
	tc.net.cut[old] = true
	tc.net.mu.Unlock()
	var stale []*Proposal
	for i := range 20 {
		p := g.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "stale-%d", i), AckCommitted)
		stale = append(stale, p)
	}
	waitFor(t, 10*time.Second, "the cut-off leader to step down", func() bool { return g.Status().Role != RoleLeader })
	var other uint64
	waitFor(t, 10*time.Second, "a new leader", func() bool {
		for id, og := range tc.groups {
			if id != old && og.Status().Role == RoleLeader {
				other = id
				return true
			}
		}
		return false
	})
	tc.net.mu.Lock()
	clear(tc.net.cut)
	tc.net.mu.Unlock()
	newCommit := tc.groups[other].Status().CommitIndex
	waitFor(t, 10*time.Second, "the old leader to catch up", func() bool {
		st := g.Status()
		return st.CommitIndex >= newCommit && st.Leader == other
	})
	time.Sleep(500 * time.Millisecond) // many heartbeats: nothing more to commit
	var unresolved []uint64
	for _, p := range stale {
		select {
		case <-p.Done():
			var notLeader *NotLeaderError
			if _, _, err := p.Wait(ctx); !errors.As(err, &notLeader) {
				t.Errorf("a proposal of the deposed leader (index %d) resolved with %v; want *NotLeaderError", p.index, err)
			}
		default:
			unresolved = append(unresolved, p.index)
		}
	}
	st := g.Status()
	if len(unresolved) > 0 {
		t.Errorf("after the step-down and the truncation of its tail, %d proposals of the old leader are still unresolved (indexes %v; commit %d, last log index %d)",
			len(unresolved), unresolved, st.CommitIndex, tc.logs[old].LastIndex())
	}

	// Lead again: a proposal that commits must resolve as committed.
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.groups[other].TransferLeadership(tctx, old); err != nil {
		t.Fatalf("transfer back: %v", err)
	}
	waitFor(t, 10*time.Second, "old node to lead", func() bool { return g.Status().Role == RoleLeader })
	fresh := g.Propose(ctx, protocol.EntryControl, []byte("fresh"), AckCommitted)
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	defer wcancel()
	_, _, err := fresh.Wait(wctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a proposal of the re-elected leader did not resolve in 2s (index %d, term %d; commit %d)", fresh.index, fresh.term, g.Status().CommitIndex)
	}
	// A proposer that waits for each proposal before the next never gets
	// past the stale indexes: the group stays stuck.
	serial := g.Propose(ctx, protocol.EntryControl, []byte("serial"), AckCommitted)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, _, err := serial.Wait(sctx); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second proposal of the re-elected leader did not resolve in 2s either (index %d; commit %d)", serial.index, g.Status().CommitIndex)
	}
	// Push the commit index past the stale indexes without waiting.
	var more []*Proposal
	for i := range 30 {
		more = append(more, g.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "more-%d", i), AckCommitted))
	}
	mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
	defer mcancel()
	if _, _, err := more[len(more)-1].Wait(mctx); err != nil {
		t.Fatalf("last of 30 more: %v", err)
	}
	for _, p := range []*Proposal{fresh, serial} {
		_, _, err = p.Wait(mctx)
		if err != nil {
			term, terr := tc.logs[old].Term(p.index)
			t.Errorf("proposal resolved with %v, but the log holds its entry (index %d term %d) committed: log term %d (%v), commit %d",
				err, p.index, p.term, term, terr, g.Status().CommitIndex)
		}
	}
}

// The proposals of a deposed leader whose log a snapshot then replaces
// resolve at the restore: committed entries continue after the snapshot's
// index, so the commit index never passes them. Here their term is older
// than the snapshot's and nothing says whether another leader committed
// them: *NotLeaderError (Group.resolveRestored).
func TestProposalsOfADeposedLeaderResolveWhenASnapshotReplacesItsLog(t *testing.T) {
	sc := newSnapshotCluster(t, false)
	old := sc.leader()
	sc.propose(5, "before")
	sc.waitConverged()
	sc.isolated.Store(old)
	ctx := context.Background()
	g := sc.group(old)
	var stale []*Proposal
	for i := range 10 {
		stale = append(stale, g.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "stale-%d", i), AckCommitted))
	}
	waitFor(t, 10*time.Second, "the isolated leader to step down", func() bool { return g.Status().Role != RoleLeader })
	sc.propose(200, "while-isolated")
	leader := sc.leader()
	meta := sc.snapshotAndCompact(leader)
	sc.isolated.Store(0)
	waitFor(t, 10*time.Second, "the old leader to restore the snapshot", func() bool {
		return g.Status().AppliedIndex >= meta.Index
	})
	if sc.nodes[old].fsm.restores != 1 {
		t.Fatalf("the old leader restored %d snapshots, want 1", sc.nodes[old].fsm.restores)
	}
	for _, p := range stale {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, err := p.Wait(wctx)
		cancel()
		var notLeader *NotLeaderError
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("a proposal of the deposed leader (index %d term %d) is unresolved 2s after the restore of snapshot %v", p.index, p.term, meta.ID())
		case !errors.As(err, &notLeader):
			t.Errorf("a proposal of the deposed leader (index %d term %d) resolved with %v; want *NotLeaderError", p.index, p.term, err)
		case p.index == 0:
			t.Errorf("a proposal was refused (%v), not appended: the test did not propose in time", err)
		}
	}
}
