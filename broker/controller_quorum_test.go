package broker

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestRemoveControllerKeepsALiveQuorum: with controller voter D down, a
// remove-controller of a running voter R would leave {L, D}, whose quorum
// needs the dead D: the joint configuration could never commit and the
// controller (topics, metadata, consumer groups) would stop until D came
// back, with no way to undo the change. It is refused, saying why, and
// the controller keeps committing; removing D itself is accepted.
func TestRemoveControllerKeepsALiveQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestCluster(t, 3)
	client.createTopic("before", 1, 3)
	var leader uint64
	waitFor(ctx, t, "a controller leader", func() bool {
		for _, b := range cluster.running() {
			if b.controllerCaughtUp() {
				leader = b.cfg.ID
				return true
			}
		}
		return false
	})
	var others []uint64
	for _, id := range []uint64{1, 2, 3} {
		if id != leader {
			others = append(others, id)
		}
	}
	dead, removed := others[0], others[1]
	if err := cluster.StopBroker(ctx, dead); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the dead voter to be unconfirmed at the controller leader", func() bool {
		st := cluster.Broker(leader).controller.group.Status()
		return slices.Contains(st.Unconfirmed, dead) && !cluster.Broker(leader).aliveBrokers()[dead]
	})

	var reply protocol.ControllerMemberReply
	client.admin(protocol.AdminRemoveController, protocol.ControllerMemberRequest{Version: 1, Broker: removed}, &reply)
	if reply.Error == nil || reply.Error.Code != protocol.CodeInvalidArgument || !strings.Contains(reply.Error.Message, "quorum") {
		t.Fatalf("remove-controller %d with voter %d down: got %+v, want invalid_argument about the quorum", removed, dead, reply)
	}
	if conf := cluster.Broker(leader).controller.group.Status().Configuration; conf.Joint() || !slices.Equal(conf.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("controller configuration after the refusal: %+v", conf)
	}

	// Removing the dead voter leaves two live ones: accepted.
	var removal protocol.ControllerMemberReply
	client.admin(protocol.AdminRemoveController, protocol.ControllerMemberRequest{Version: 1, Broker: dead}, &removal)
	if removal.Error != nil || removal.Controller == nil || slices.Contains(removal.Controller.Voters, dead) || len(removal.Controller.Voters) != 2 {
		t.Fatalf("remove-controller %d (down): %+v", dead, removal)
	}
	client.createTopic("after-removal", 1, 2)
}
