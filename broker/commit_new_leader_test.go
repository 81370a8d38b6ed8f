package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// TestCommitAtANewLeaderCoversWhatThePreviousLeaderServed: a consumer
// fetched a record from the leader and commits the offset after it at a
// new leader that has the record committed but not applied yet (its apply
// is held here). The new leader waits until it applied an entry of its term
// and checks the commit against a high watermark that covers the record.
// Before, it checked against the high watermark it had applied so far and
// refused the commit with offset_out_of_range, which is not retriable: the
// commit of records the consumer had consumed was lost (found in review,
// where the window was 0.1 to 11 ms after a leadership transfer).
func TestCommitAtANewLeaderCoversWhatThePreviousLeaderServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 3)
	info := client.createTopic("hw", 1, 3)
	preferred := info.Partitions[0].Replicas[0]
	target := replicaOf(t, cluster, preferred, "hw")
	preferredLeads := func() bool { return target.group.Status().Role == raft.RoleLeader }
	waitFor(ctx, t, "the preferred replica to lead", preferredLeads)

	// Leadership moves to another broker, which serves a record that the
	// preferred broker does not apply (its apply is held: apply goes through
	// its producer state for every entry); then back to the preferred broker,
	// where the leader balancing keeps it.
	other := preferred%3 + 1
	held := &target.state.consumers.producers.mu
	var offset uint64
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			t.Fatal("leadership never stayed at the other broker long enough")
		}
		if err := target.group.TransferLeadership(ctx, other); err != nil {
			t.Logf("transfer to broker %d: %v", other, err)
			waitFor(ctx, t, "the preferred replica to lead again", preferredLeads)
			continue
		}
		held.Lock()
		// acks=quorum: a produce that leadership moved to the held broker
		// must not wait for its apply.
		c := &leaderClient{testClient: client, leader: other, nodes: 3, acks: protocol.AcksQuorum}
		var err error
		if offset, err = c.produce(ctx, "hw", 0, buildBatch(t, "served")); err != nil {
			t.Fatal(err)
		}
		fetched, err := client.fetchFrom(other, &protocol.FetchRequest{Topic: "hw", Partition: 0, Offset: offset, MaxBytes: 1 << 20})
		if c.leader == other && err == nil && fetched.Err == nil && len(decodeFetched(t, fetched.Batches)) == 1 {
			break
		}
		held.Unlock()
		waitFor(ctx, t, "the preferred replica to lead again", preferredLeads)
	}
	release := sync.OnceFunc(held.Unlock)
	defer release()
	// The leader balancing may have moved leadership back already (then
	// this fails with not leader); either way the preferred broker leads.
	_ = replicaOf(t, cluster, other, "hw").group.TransferLeadership(ctx, preferred)
	waitFor(ctx, t, "the preferred replica to lead with entries committed but not applied", func() bool {
		st := target.group.Status()
		return st.Role == raft.RoleLeader && st.CommitIndex > st.AppliedIndex
	})
	time.AfterFunc(300*time.Millisecond, release)

	var reply protocol.OffsetCommitReply
	if err := client.groupCall(preferred, protocol.SubjectBrokerCommit, protocol.OffsetCommitRequest{Version: 1, Group: "g", Member: "m",
		Offsets: []protocol.PartitionOffset{{Topic: "hw", Partition: 0, Offset: offset + 1}}}, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Error != nil || len(reply.Results) != 1 || reply.Results[0].Error != nil {
		t.Fatalf("commit of offset %d, after the record the consumer fetched, at the new leader: %+v", offset+1, reply)
	}
}
