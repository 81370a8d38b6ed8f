package raft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Batches and single proposals from several proposers at once, in every
// ack mode: each batch's future gives the index of its last entry, the
// batch's entries sit at the indexes before it, in order, on every node's
// state machine, and when the future resolves the state machine applied
// the whole batch (AckApplied) or the status committed it (AckCommitted).
func TestProposeBatchEntriesAreConsecutiveOnEveryNode(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leaderID := tc.leader(t)
	g := tc.groups[leaderID]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const proposers, rounds = 4, 30
	type batchAt struct {
		datas [][]byte
		last  uint64
	}
	var mu sync.Mutex
	var batches []batchAt
	var wg sync.WaitGroup
	for w := range proposers {
		wg.Go(func() {
			for r := range rounds {
				mode := AckMode(r % 2) // AckCommitted, AckApplied
				n := 1 + (w+r)%7
				datas := make([][]byte, n)
				for i := range datas {
					datas[i] = fmt.Appendf(nil, "w%d-r%d-e%d", w, r, i)
				}
				var single *Proposal
				if r%3 == 0 {
					single = g.Propose(ctx, protocol.EntryControl, fmt.Appendf(nil, "w%d-r%d-single", w, r), mode)
				}
				last, _, err := g.ProposeBatch(ctx, protocol.EntryControl, datas, mode).Wait(ctx)
				if err != nil {
					t.Errorf("batch w%d r%d: %v", w, r, err)
					return
				}
				switch mode {
				case AckApplied:
					tc.fsms[leaderID].mu.Lock()
					applied := tc.fsms[leaderID].last
					tc.fsms[leaderID].mu.Unlock()
					if applied < last {
						t.Errorf("AckApplied batch resolved at %d with the state machine at %d", last, applied)
					}
				default:
					if st := g.Status(); st.CommitIndex < last {
						t.Errorf("AckCommitted batch resolved at %d with commit index %d", last, st.CommitIndex)
					}
				}
				if single != nil {
					if _, _, err := single.Wait(ctx); err != nil {
						t.Errorf("single w%d r%d: %v", w, r, err)
						return
					}
				}
				mu.Lock()
				batches = append(batches, batchAt{datas: datas, last: last})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var end uint64
	for _, b := range batches {
		end = max(end, b.last)
	}
	for id, fsm := range tc.fsms {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d to apply %d", id, end), func() bool {
			fsm.mu.Lock()
			defer fsm.mu.Unlock()
			return fsm.last >= end
		})
		fsm.mu.Lock()
		byIndex := map[uint64]string{}
		for _, e := range fsm.applied {
			byIndex[e.Index] = string(e.Data)
		}
		fsm.mu.Unlock()
		for _, b := range batches {
			first := b.last - uint64(len(b.datas)) + 1
			for i, d := range b.datas {
				if got := byIndex[first+uint64(i)]; got != string(d) {
					t.Fatalf("node %d: index %d holds %q, want %q (entry %d of the batch ending at %d)", id, first+uint64(i), got, d, i, b.last)
				}
			}
		}
	}
}

// ProposeBatch refuses what Propose refuses (a follower, a config entry),
// and an empty batch; a batch pending when the group is removed fails with
// ErrClosed, as a single proposal does.
func TestProposeBatchRefusalsAndClose(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	two := [][]byte{[]byte("a"), []byte("b")}
	if _, _, err := tc.groups[leader].ProposeBatch(ctx, protocol.EntryControl, nil, AckCommitted).Wait(ctx); !errors.Is(err, ErrEmptyBatch) {
		t.Fatalf("empty batch: %v, want ErrEmptyBatch", err)
	}
	if _, _, err := tc.groups[leader].ProposeBatch(ctx, protocol.EntryConfig, two, AckCommitted).Wait(ctx); !errors.Is(err, ErrConfigEntry) {
		t.Fatalf("config batch: %v, want ErrConfigEntry", err)
	}
	for id, g := range tc.groups {
		if id == leader {
			continue
		}
		waitFor(t, 5*time.Second, "follower to learn the leader", func() bool { return g.Status().Leader == leader })
		var nle *NotLeaderError
		if _, _, err := g.ProposeBatch(ctx, protocol.EntryControl, two, AckCommitted).Wait(ctx); !errors.As(err, &nle) || nle.Leader != leader {
			t.Fatalf("batch on follower %d: %v, want NotLeaderError{%d}", id, err, leader)
		}
	}
	tc.net.mu.Lock()
	for id := range tc.hosts {
		if id != leader {
			tc.net.cut[id] = true
		}
	}
	tc.net.mu.Unlock()
	p := tc.groups[leader].ProposeBatch(ctx, protocol.EntryControl, two, AckCommitted)
	if err := tc.hosts[leader].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("pending batch after RemoveGroup: %v, want ErrClosed", err)
	}
}

// The inbox keeps a batch's entries together, its future beside the last:
// a take sees nil futures for the others, and close hands back only real
// futures.
func TestProposalInboxBatchHoldsOneFutureAtItsLastEntry(t *testing.T) {
	var q proposalInbox
	single, _ := q.push(protocol.EntryControl, []byte("s"), AckCommitted)
	batch, wasEmpty := q.pushBatch(protocol.EntryControl, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, AckApplied)
	if wasEmpty {
		t.Fatal("second push found the inbox empty")
	}
	props, ents := q.take(nil, nil)
	if len(props) != 4 || len(ents) != 4 {
		t.Fatalf("took %d futures and %d entries, want 4 and 4", len(props), len(ents))
	}
	if props[0] != single || props[1] != nil || props[2] != nil || props[3] != batch || batch.mode != AckApplied {
		t.Fatalf("futures %v, want [single nil nil batch]", props)
	}
	if string(ents[1].Data)+string(ents[2].Data)+string(ents[3].Data) != "abc" {
		t.Fatalf("batch entries out of order: %q %q %q", ents[1].Data, ents[2].Data, ents[3].Data)
	}
	batch2, _ := q.pushBatch(protocol.EntryControl, [][]byte{[]byte("x"), []byte("y")}, AckCommitted)
	if left := q.close(); len(left) != 1 || left[0] != batch2 {
		t.Fatalf("close returned %v, want only the batch's future", left)
	}
}
