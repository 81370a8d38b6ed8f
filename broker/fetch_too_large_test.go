package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// TestFetchOfABatchOverTheMaxPayloadFailsAtOnce: a batch written while the
// NATS max payload was 64 KiB is read after a restart on servers whose max
// payload is 16 KiB, as when an operator lowers max_payload. The batch
// before it is still served, alone; a fetch of the large batch is answered
// reply_too_large at once, naming the limit, and the SDK consumer's Poll
// reports it as the partition's error; the broker warns once. Before, the
// reply failed to publish and nothing was sent: the fetch waited out its
// timeout and the SDK retried it for ever.
func TestFetchOfABatchOverTheMaxPayloadFailsAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const topic = "large"
	dataDir := t.TempDir()
	cluster, client := startTestClusterWithDev(t, 1, DevConfig{DataDir: dataDir, MaxPayload: 64 << 10}, fastTimings)
	client.createTopic(topic, 1, 1)
	writer := &leaderClient{testClient: client, leader: 1, nodes: 1, acks: protocol.AcksQuorum}
	large := strings.Repeat("x", 10<<10)
	for _, batch := range [][]byte{buildBatch(t, "small"), buildBatch(t, large, large, large), buildBatch(t, "after")} {
		if _, err := writer.produce(ctx, topic, 0, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.Close(ctx); err != nil {
		t.Fatal(err)
	}

	const maxPayload = 16 << 10
	recorder := newLogRecorder()
	cluster, client = startTestClusterWithDev(t, 1, DevConfig{DataDir: dataDir, MaxPayload: maxPayload}, func(c *Config) {
		fastTimings(c)
		c.Logger = slog.New(recorder)
	})
	reader := &leaderClient{testClient: client, leader: 1, nodes: 1}
	reply, err := reader.fetch(ctx, protocol.FetchRequest{Topic: topic, Offset: 0, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if records := decodeFetched(t, reply.Batches); len(records) != 1 || records[0].value != "small" || reply.NextOffset != 1 {
		t.Fatalf("fetch at 0: records %v, next offset %d; want the small batch alone, next offset 1", records, reply.NextOffset)
	}

	request := protocol.AppendFetchRequest(nil, &protocol.FetchRequest{Topic: topic, Offset: 1, MaxBytes: 1 << 20})
	start := time.Now()
	msg, err := client.nc.Request(protocol.SubjectBrokerFetch(client.prefix, 1), request, 5*time.Second)
	if err != nil {
		t.Fatalf("fetch of the large batch: no reply after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	reply, err = protocol.DecodeFetchReply(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Err == nil || reply.Err.Code != protocol.CodeReplyTooLarge || reply.Err.Limit != maxPayload {
		t.Fatalf("fetch of the large batch: error %+v, want reply_too_large with limit %d", reply.Err, maxPayload)
	}

	sdk, err := clients.Connect(ctx, strings.Join(cluster.ClientURLs(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	consumer, err := sdk.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(ctx, topic, clients.Earliest(), 0); err != nil {
		t.Fatal(err)
	}
	pollCtx, pollCancel := context.WithTimeout(ctx, 10*time.Second)
	defer pollCancel()
	var polled []string
	for {
		records, err := consumer.Poll(pollCtx)
		for _, r := range records {
			polled = append(polled, string(r.Value))
		}
		if err == nil {
			continue
		}
		var partitionErr *clients.PartitionError
		if !errors.As(err, &partitionErr) || !errors.Is(err, protocol.CodeReplyTooLarge) {
			t.Fatalf("poll after %v: %v, want the partition's reply_too_large", polled, err)
		}
		break
	}
	if len(polled) != 1 || polled[0] != "small" {
		t.Fatalf("polled %v before the error, want [small]", polled)
	}

	const warning = "fetch reply over the NATS max payload"
	if levels := recorder.logged(warning); len(levels) != 1 || levels[0] != slog.LevelWarn {
		t.Fatalf("%q logged at %v, want once at warn", warning, levels)
	}
}
