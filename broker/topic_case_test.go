package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestTopicNamesDifferingOnlyInCaseAreRefused: a create of "Orders" while
// "orders" exists is refused with topic_exists, since the two topics'
// replica directories would be one directory on a case-insensitive file
// system (where the second topic's start would clear the first's data).
// Before, the create succeeded.
func TestTopicNamesDifferingOnlyInCaseAreRefused(t *testing.T) {
	_, client := startTestCluster(t, 1)
	client.createTopic("orders", 1, 1)
	var reply protocol.TopicReply
	client.admin(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "Orders", Partitions: 1, Replicas: 1}, &reply)
	if reply.Error == nil || reply.Error.Code != protocol.CodeTopicExists || !strings.Contains(reply.Error.Message, `"orders"`) {
		t.Fatalf("create of Orders beside orders: %+v, want topic_exists naming orders", reply)
	}
	var list protocol.ListTopicsReply
	client.admin(protocol.AdminListTopics, struct {
		Version int `json:"v"`
	}{1}, &list)
	if len(list.Topics) != 1 || list.Topics[0].Name != "orders" {
		t.Fatalf("topics after the refused create: %+v", list.Topics)
	}
}

// TestCreatesLoggedBeforeTheCaseRuleStillApply: a create in the
// controller's log from before the rule (without CaseUnique) applies as it
// did, so replaying an older log gives the same metadata.
func TestCreatesLoggedBeforeTheCaseRuleStillApply(t *testing.T) {
	m, e := applyCommand(newClusterMetadata([]uint64{1}), 2, controllerCommand{Op: opCreateTopic, Topic: "orders", Partitions: 1, Replicas: 1, Time: time.Now()})
	if e != nil {
		t.Fatal(e)
	}
	old, e := applyCommand(m, 3, controllerCommand{Op: opCreateTopic, Topic: "Orders", Partitions: 1, Replicas: 1, Time: time.Now()})
	if e != nil || old.Topics["Orders"] == nil {
		t.Fatalf("a create logged before the rule: %v", e)
	}
	if _, e := applyCommand(m, 3, controllerCommand{Op: opCreateTopic, Topic: "Orders", Partitions: 1, Replicas: 1, CaseUnique: true, Time: time.Now()}); e == nil || e.Code != protocol.CodeTopicExists {
		t.Fatalf("a create under the rule: %v, want topic_exists", e)
	}
}
