package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestFollowerCatchesUpThroughAppendEntriesOfManySmallEntries: an
// AppendEntries fits one peer frame however small its entries are.
// MaxAppendBytes (the frame less 4 KiB) used to bound only the entries'
// data, while each entry costs a few bytes more on the wire (index, term,
// type, length): a leader reading a lagging follower's entries from its
// log (not its entry window, so after a leader change) filled the limit
// with ~900 small batches at a 64 KiB max payload, the transport refused
// the frame (ErrFrameTooLarge), the broker dropped it, and the leader sent
// the same message at every heartbeat: the follower never caught up.
func TestFollowerCatchesUpThroughAppendEntriesOfManySmallEntries(t *testing.T) {
	const total = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cluster, client := startTestClusterWithDev(t, 3, DevConfig{MaxPayload: 64 << 10}, fastTimings)
	client.createTopic("small", 1, 3)
	leader := currentLeader(t, client, "small")
	batch := buildBatch(t, "x")
	c := &leaderClient{testClient: client, leader: leader, nodes: 3, acks: protocol.AcksQuorum}
	if _, err := c.produce(ctx, "small", 0, batch); err != nil {
		t.Fatal(err)
	}
	follower := leader%3 + 1
	if err := cluster.StopBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	const producers = 8
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := &leaderClient{testClient: client, leader: leader, nodes: 3, acks: protocol.AcksQuorum}
			for i := p; i < total; i += producers {
				if _, err := pc.produce(ctx, "small", 0, batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Stop the leader too: the third replica leads, and its entry window
	// no longer holds the entries (it applied them as a follower), so it
	// reads them from its log, up to the whole MaxAppendBytes.
	third := 6 - leader - follower
	if err := cluster.StopBroker(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, follower); err != nil {
		t.Fatal(err)
	}
	leader = third
	waitCtx, waitCancel := context.WithTimeout(ctx, 20*time.Second)
	defer waitCancel()
	for attempt := 0; ; attempt++ {
		lb := cluster.Broker(leader)
		lb.mu.RLock()
		lr := lb.partitions[topicPartition{"small", 0}]
		lb.mu.RUnlock()
		leaderApplied := lr.group.Status().AppliedIndex
		var followerApplied uint64
		fb := cluster.Broker(follower)
		fb.mu.RLock()
		fr := fb.partitions[topicPartition{"small", 0}]
		fb.mu.RUnlock()
		if fr != nil {
			if followerApplied = fr.group.Status().AppliedIndex; followerApplied >= leaderApplied {
				return
			}
		}
		if waitCtx.Err() != nil {
			t.Fatalf("follower %d applied %d of the leader's %d after 20 s (leader %d transport: max frame %d, stats %+v)",
				follower, followerApplied, leaderApplied, leader, lb.peers.MaxFrameSize(), lb.peers.Stats())
		}
		waitBackoff(waitCtx, attempt)
	}
}
