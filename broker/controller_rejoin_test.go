package broker

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// A bootstrap broker removed from the controller that comes back with an
// empty disk must not bootstrap the controller again (it would be a voter
// of the configuration the cluster left, and with other such brokers could
// elect a controller of its own): it starts outside the controller group,
// as a plain broker, and the controller keeps its membership.
func TestRemovedBootstrapBrokerWithEmptyDiskDoesNotBootstrapTheController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startManualRetentionCluster(t, ctx, 1)
	var reply protocol.ControllerMemberReply
	client.admin(protocol.AdminAddController, protocol.ControllerMemberRequest{Version: 1, Broker: 4}, &reply)
	if reply.Error != nil {
		t.Fatalf("add-controller 4: %v", reply.Error)
	}
	client.admin(protocol.AdminRemoveController, protocol.ControllerMemberRequest{Version: 1, Broker: 3}, &reply)
	if reply.Error != nil || reply.Controller == nil || !slices.Equal(reply.Controller.Voters, []uint64{1, 2, 4}) {
		t.Fatalf("remove-controller 3: %+v", reply)
	}
	// Every other bootstrap broker knows the new membership before 3 comes
	// back (either may be the one that answers it).
	waitFor(ctx, t, "brokers 1 and 2 to know the controller without broker 3", func() bool {
		for _, id := range []uint64{1, 2} {
			m := cluster.Broker(id).controllerMembership()
			if m == nil || !slices.Equal(m.Voters, []uint64{1, 2, 4}) {
				return false
			}
		}
		return true
	})

	if err := cluster.StopBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(cluster.configs[3].DataDir); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StartBroker(ctx, 3); err != nil {
		t.Fatal(err)
	}
	returned := cluster.Broker(3)
	if conf := returned.controller.group.Status().Configuration; isMember(conf, 3) || len(conf.Voters) != 0 {
		t.Fatalf("broker 3 came back with an empty disk and bootstrapped the controller configuration %+v", conf)
	}
	// It still joins the cluster as a broker, and the controller keeps
	// working with its membership unchanged.
	waitFor(ctx, t, "broker 3 to learn the cluster metadata", func() bool { return returned.Ready() })
	client.createTopic("after-return", 1, 3)
	var status protocol.MetadataReply
	client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
	if status.Controller == nil || !slices.Equal(status.Controller.Voters, []uint64{1, 2, 4}) || status.ControllerLeader == 3 {
		t.Fatalf("cluster status after broker 3 returned: controller %+v, leader %d", status.Controller, status.ControllerLeader)
	}
	if returned.isControllerLeader() {
		t.Fatal("the returned broker leads a controller")
	}
}
