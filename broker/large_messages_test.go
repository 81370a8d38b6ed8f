package broker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/raftmq/raftmq/protocol"
)

// adminAccepting is testClient.admin for a requester that reads compressed
// replies, as the SDK is: it asks for zstd and decodes what it gets. It
// returns the reply's payload size on the wire.
func (c *testClient) adminAccepting(op string, req, reply any) int {
	c.t.Helper()
	data, _ := json.Marshal(req)
	msg, err := c.nc.RequestMsg(&nats.Msg{
		Subject: protocol.SubjectAdmin(c.prefix, op), Data: data,
		Header: nats.Header{protocol.HeaderAcceptEncoding: []string{protocol.EncodingZstd}},
	}, 20*time.Second)
	if err != nil {
		c.t.Fatalf("admin %s: %v", op, err)
	}
	plain, err := protocol.DecodePayload(msg.Data, msg.Header.Get(protocol.HeaderEncoding))
	if err != nil {
		c.t.Fatalf("admin %s: %v", op, err)
	}
	if err := json.Unmarshal(plain, reply); err != nil {
		c.t.Fatalf("admin %s reply %.200s: %v", op, plain, err)
	}
	return len(msg.Data)
}

// TestStatusReportsAndRepliesOverTheMaxPayload: on NATS servers with an
// 8 KiB max payload, a topic of 120 partitions makes every broker's
// status report (about 200 bytes a replica) and the cluster status reply
// several times larger than a message may be. The reports still reach the
// other brokers (compressed), so every broker is seen alive; a requester
// that reads compressed replies gets the cluster status, and one that does
// not gets reply_too_large at once instead of waiting out its timeout.
// Before, the reports were dropped without a word (every broker saw the
// others down) and so was the reply.
func TestStatusReportsAndRepliesOverTheMaxPayload(t *testing.T) {
	const maxPayload = 8 << 10
	const partitions = 120
	_, client := startTestClusterWithDev(t, 3, DevConfig{MaxPayload: maxPayload}, func(c *Config) {
		fastTimings(c)
		c.MaxRecordBytes = 2 << 10
	})
	var created protocol.TopicReply
	client.adminAccepting(protocol.AdminCreateTopic, protocol.CreateTopicRequest{
		Version: 1, Name: "wide", Partitions: partitions, Replicas: 3,
	}, &created)
	if created.Error != nil {
		t.Fatalf("create: %v", created.Error)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		var status protocol.MetadataReply
		size := client.adminAccepting(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &status)
		if status.Error != nil && !status.Error.Code.Retriable() {
			t.Fatalf("cluster status: %v", status.Error)
		}
		alive := 0
		for _, b := range status.Brokers {
			if b.Alive {
				alive++
			}
		}
		if alive == 3 {
			plain, _ := json.Marshal(status)
			if size > maxPayload || len(plain) <= maxPayload {
				t.Fatalf("cluster status of %d bytes sent in %d: want it over the max payload plain, under it compressed", len(plain), size)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("brokers alive %d of 3: status reports are not getting through", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A requester that does not read compressed replies.
	for {
		start := time.Now()
		var plain protocol.MetadataReply
		client.admin(protocol.AdminClusterStatus, protocol.MetadataRequest{Version: 1}, &plain)
		if plain.Error != nil && plain.Error.Code.Retriable() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue // not_ready: leadership moved
		}
		if plain.Error == nil || plain.Error.Code != protocol.CodeReplyTooLarge {
			t.Fatalf("plain cluster status: error %v, want reply_too_large", plain.Error)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("reply_too_large took %v", took)
		}
		return
	}
}
