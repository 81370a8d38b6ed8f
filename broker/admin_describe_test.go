package broker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// A broker that has not received the metadata broadcast of a delete yet
// (the broadcast is asynchronous) must still not describe the deleted topic,
// list it or show it in the cluster status: describe, list and status are
// answered by the controller leader.
func TestDescribeAfterDeleteThroughABrokerWithStaleMetadata(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client.createTopic("doomed", 1, 3)

	var follower *Broker
	for attempt := 0; follower == nil; attempt++ {
		for id := uint64(1); id <= 3; id++ {
			b := cluster.Broker(id)
			if !b.isControllerLeader() && b.currentMetadata().Topics["doomed"] != nil {
				follower = b
			}
		}
		if ctx.Err() != nil {
			t.Fatal("no follower adopted the topic")
		}
		waitBackoff(ctx, attempt)
	}
	stale := follower.currentMetadata()

	var deleted protocol.DeleteTopicReply
	client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Version: 1, Name: "doomed"}, &deleted)
	if deleted.Error != nil {
		t.Fatal(deleted.Error)
	}
	ask := func(op string, req any, reply any) {
		t.Helper()
		// Roll the follower back to the metadata it held before the
		// delete, as if the broadcast were still in flight. (The leader
		// rebroadcasts every status interval, so this is done right
		// before each request.)
		inbox := nats.NewInbox()
		sub, err := client.nc.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		data, _ := json.Marshal(req)
		follower.mu.Lock()
		follower.metadata = stale
		follower.mu.Unlock()
		follower.handleAdmin(&nats.Msg{Subject: protocol.SubjectAdmin(follower.prefix, op), Data: data, Reply: inbox, Sub: sub})
		msg, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if err := json.Unmarshal(msg.Data, reply); err != nil {
			t.Fatal(err)
		}
	}
	var described protocol.TopicReply
	ask(protocol.AdminDescribeTopic, protocol.TopicRequest{Version: 1, Name: "doomed"}, &described)
	if described.Error == nil || described.Error.Code != protocol.CodeUnknownTopic {
		t.Errorf("describe of a deleted topic through broker %d: %+v", follower.cfg.ID, described)
	}
	var listed protocol.ListTopicsReply
	ask(protocol.AdminListTopics, protocol.MetadataRequest{Version: 1}, &listed)
	for _, topic := range listed.Topics {
		if topic.Name == "doomed" {
			t.Errorf("list through broker %d still shows the deleted topic", follower.cfg.ID)
		}
	}
	var status protocol.MetadataReply
	ask(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
	if status.Error != nil || status.ControllerLeader == 0 {
		t.Errorf("cluster status through broker %d: error %v, controller leader %d", follower.cfg.ID, status.Error, status.ControllerLeader)
	}
	for _, topic := range status.Topics {
		if topic.Name == "doomed" {
			t.Errorf("cluster status through broker %d still shows the deleted topic", follower.cfg.ID)
		}
	}
}
