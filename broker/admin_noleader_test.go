package broker

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// With the controller's quorum gone, an admin request is answered not_ready
// with a message that says why once no controller leader has been known for
// noControllerLeaderWait, not held for the whole admin timeout; a cluster
// status is answered from the surviving broker's own view, with no
// controller leader.
func TestAdminWithoutControllerQuorumAnswersNotReady(t *testing.T) {
	cluster, client := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Keep a broker that does not lead the controller; stop the others.
	var survivor uint64
	for id := uint64(1); id <= 3 && survivor == 0; id++ {
		if !cluster.Broker(id).isControllerLeader() {
			survivor = id
		}
	}
	for id := uint64(1); id <= 3; id++ {
		if id == survivor {
			continue
		}
		if err := cluster.StopBroker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	nc := client.nc // the NATS servers keep running; the survivor alone answers
	ask := func(op string, req, reply any) time.Duration {
		data, _ := json.Marshal(req)
		start := time.Now()
		// The request's own timeout is the admin timeout plus slack: a
		// reply at the admin timeout itself is the old behaviour.
		msg, err := nc.Request(protocol.SubjectAdmin(protocol.DefaultSubjectPrefix, op), data, adminTimeout+10*time.Second)
		if err != nil {
			t.Errorf("%s: %v", op, err)
			return 0
		}
		if err := json.Unmarshal(msg.Data, reply); err != nil {
			t.Errorf("%s reply %s: %v", op, msg.Data, err)
		}
		return time.Since(start)
	}
	// Right after the others stopped, the survivor may still lead (a
	// stopping leader hands leadership over): the create is then proposed
	// and stays pending, else it is forwarded and finds no leader. Either
	// way it is answered not_ready, well before the admin timeout.
	var created protocol.TopicReply
	createTook := ask(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "orphan", Partitions: 1, Replicas: 1}, &created)
	if t.Failed() {
		return
	}
	if created.Error == nil || created.Error.Code != protocol.CodeNotReady || !strings.Contains(created.Error.Message, "lost their quorum") {
		t.Errorf("create without a controller quorum answered %+v (after %v), want not_ready naming the lost quorum", created, createTook)
	}
	if createTook >= adminTimeout {
		t.Errorf("create without a controller quorum was answered after %v, the whole admin timeout", createTook)
	}

	// Once the survivor knows no leader, a create is forwarded, finds none
	// and says so; a cluster status shows the survivor's own view.
	for attempt := 0; cluster.Broker(survivor).controllerGroupLeader() != 0; attempt++ {
		if ctx.Err() != nil {
			t.Fatal("the survivor still sees a controller leader")
		}
		waitBackoff(ctx, attempt)
	}
	var wg sync.WaitGroup
	var status protocol.MetadataReply
	wg.Add(2)
	go func() {
		defer wg.Done()
		created = protocol.TopicReply{}
		createTook = ask(protocol.AdminCreateTopic, protocol.CreateTopicRequest{Version: 1, Name: "orphan", Partitions: 1, Replicas: 1}, &created)
	}()
	go func() {
		defer wg.Done()
		ask(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
	}()
	wg.Wait()
	if t.Failed() {
		return
	}
	if created.Error == nil || created.Error.Code != protocol.CodeNotReady ||
		!strings.Contains(created.Error.Message, "no reachable leader") || !strings.Contains(created.Error.Message, "lost their quorum") {
		t.Errorf("forwarded create without a controller leader answered %+v (after %v), want not_ready naming the missing leader", created, createTook)
	}
	if createTook >= adminTimeout {
		t.Errorf("forwarded create without a controller leader was answered after %v, the whole admin timeout", createTook)
	}
	alive := map[uint64]bool{}
	for _, b := range status.Brokers {
		alive[b.ID] = b.Alive
	}
	if status.Error != nil || status.ControllerLeader != 0 || len(status.Brokers) != 3 || !alive[survivor] {
		t.Errorf("cluster status without a controller leader: error %v, controller leader %d, brokers %+v",
			status.Error, status.ControllerLeader, status.Brokers)
	}
}
