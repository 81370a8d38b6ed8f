package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestConsumerOpsEntriesFitInAPeerMessage: consumer ops queued together
// on a partition leader (many groups committing at once, each with the
// most metadata allowed) are proposed as several entries, each no larger
// than a record batch may be, so every one reaches the followers and
// commits, and the partition goes on taking records. Before, the batcher
// put all of them (here about 1.7 MB) into one entry larger than a peer
// message: it never reached a follower, never committed, and every later
// entry of the partition, produces included, waited behind it for good.
func TestConsumerOpsEntriesFitInAPeerMessage(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client.createTopic("ops", 1, 3)
	c := &leaderClient{testClient: client, leader: 1, nodes: 3, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, "ops", 0, buildBatch(t, "before")); err != nil {
		t.Fatal(err)
	}
	b := cluster.Broker(c.leader)
	r, apiErr := b.replicaFor("ops", 0)
	if apiErr == nil {
		apiErr = b.leaderCheck(r)
	}
	if apiErr != nil {
		t.Fatalf("broker %d: %v", c.leader, apiErr)
	}
	metadata := strings.Repeat("x", protocol.MaxCommitMetadataBytes)
	ops := make([]protocol.ConsumerOp, 400)
	for i := range ops {
		ops[i] = protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: fmt.Sprintf("group-%d", i), Member: "m",
			Offset: 1, Metadata: metadata, Time: time.Now().UnixMilli()}
	}
	if size := protocol.ConsumerOpsSize(ops); size <= b.maxBatchBytes {
		t.Fatalf("the ops take %d bytes, not more than one entry may (%d): the test proves nothing", size, b.maxBatchBytes)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 15*time.Second)
	defer waitCancel()
	for i, err := range awaitOps(waitCtx, b.submitConsumerOps(r, ops)) {
		if err != nil {
			t.Fatalf("op %d of %d: %v", i, len(ops), err)
		}
	}
	if _, err := c.produce(ctx, "ops", 0, buildBatch(t, "after")); err != nil {
		t.Fatalf("a produce after the ops: %v", err)
	}
	var reply protocol.OffsetFetchReply
	req := protocol.OffsetFetchRequest{Version: protocol.APIVersion, Group: "group-399",
		Partitions: []protocol.GroupPartition{{Topic: "ops"}}}
	if err := client.groupCall(c.leader, protocol.SubjectBrokerCommitted, req, &reply); err != nil {
		t.Fatal(err)
	}
	if got := reply.Partitions[0]; got.Error != nil || !got.Committed || got.Offset != 1 || got.Metadata != metadata {
		t.Fatalf("group-399's commit reads back as %+v (error %v)", got.Offset, got.Error)
	}
}

// TestOffsetRequestsRefuseOversizedFields: a commit's metadata is bounded
// by MaxCommitMetadataBytes (refused per partition, as Kafka's
// OFFSET_METADATA_TOO_LARGE is), and a member id of an offset commit or
// fetch follows the rules of group names; refused with invalid_argument,
// nothing is stored. Before, both were unbounded (and cut at 64 KiB when
// encoded, silently).
func TestOffsetRequestsRefuseOversizedFields(t *testing.T) {
	_, client := startTestCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("meta", 1, 1)
	c := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksApplied}
	if _, err := c.produce(ctx, "meta", 0, buildBatch(t, "a", "b")); err != nil {
		t.Fatal(err)
	}
	commit := func(member string, metadata ...string) protocol.OffsetCommitReply {
		t.Helper()
		req := protocol.OffsetCommitRequest{Version: protocol.APIVersion, Group: "g", Member: member}
		for _, m := range metadata {
			req.Offsets = append(req.Offsets, protocol.PartitionOffset{Topic: "meta", Offset: 1, Metadata: m})
		}
		var reply protocol.OffsetCommitReply
		if err := client.groupCall(1, protocol.SubjectBrokerCommit, req, &reply); err != nil {
			t.Fatal(err)
		}
		return reply
	}
	reply := commit("", strings.Repeat("x", protocol.MaxCommitMetadataBytes+1), strings.Repeat("y", protocol.MaxCommitMetadataBytes))
	if reply.Error != nil {
		t.Fatalf("request error %v", reply.Error)
	}
	if e := reply.Results[0].Error; e == nil || e.Code != protocol.CodeInvalidArgument || e.Limit != protocol.MaxCommitMetadataBytes {
		t.Fatalf("metadata one byte over the limit: %v, want invalid_argument with the limit", e)
	}
	if e := reply.Results[1].Error; e != nil {
		t.Fatalf("metadata at the limit: %v", e)
	}
	for _, member := range []string{strings.Repeat("m", protocol.MaxGroupNameLength+1), "a b"} {
		if e := commit(member, "z").Error; e == nil || e.Code != protocol.CodeInvalidArgument {
			t.Fatalf("commit with member id %.20q: %v, want invalid_argument", member, e)
		}
		var fetch protocol.OffsetFetchReply
		req := protocol.OffsetFetchRequest{Version: protocol.APIVersion, Group: "g", Member: member, Claim: true,
			Partitions: []protocol.GroupPartition{{Topic: "meta"}}}
		if err := client.groupCall(1, protocol.SubjectBrokerCommitted, req, &fetch); err != nil {
			t.Fatal(err)
		}
		if e := fetch.Error; e == nil || e.Code != protocol.CodeInvalidArgument {
			t.Fatalf("claim with member id %.20q: %v, want invalid_argument", member, e)
		}
	}
	var fetch protocol.OffsetFetchReply
	req := protocol.OffsetFetchRequest{Version: protocol.APIVersion, Group: "g", Partitions: []protocol.GroupPartition{{Topic: "meta"}}}
	if err := client.groupCall(1, protocol.SubjectBrokerCommitted, req, &fetch); err != nil {
		t.Fatal(err)
	}
	if got := fetch.Partitions[0]; got.Error != nil || got.Metadata != strings.Repeat("y", protocol.MaxCommitMetadataBytes) {
		t.Fatalf("the stored commit has %d bytes of metadata (error %v), want the one at the limit", len(got.Metadata), got.Error)
	}
}
