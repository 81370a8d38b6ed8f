package clients

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// pollValues polls until n records arrived, returning their values per partition.
func pollValues(t *testing.T, consumer *Consumer, n int) map[uint32][]string {
	t.Helper()
	ctx := testContext(t)
	got := map[uint32][]string{}
	for count := 0; count < n; {
		records, err := consumer.Poll(ctx)
		if err != nil {
			t.Fatalf("poll after %d records: %v", count, err)
		}
		for _, r := range records {
			got[r.Partition] = append(got[r.Partition], string(r.Value))
		}
		count += len(records)
	}
	return got
}

func produceValues(t *testing.T, client *Client, topic string, partition uint32, values []string, opts ...ProducerOption) {
	t.Helper()
	opts = append([]ProducerOption{WithPartitioner(ManualPartitioner())}, opts...)
	producer, err := client.NewProducer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	var records []*Record
	for _, v := range values {
		records = append(records, &Record{Topic: topic, Partition: partition, Key: []byte("k"), Value: []byte(v)})
	}
	if err := producer.ProduceSync(testContext(t), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestConsumerReadsEveryPartitionInOrder(t *testing.T) {
	f := startFakeCluster(t, 1, 2)
	f.createTopic("orders", 2)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("a", 300))
	produceValues(t, client, "orders", 1, numbered("b", 200))

	consumer, err := client.NewConsumer(WithMaxPollRecords(64), WithFetchMaxBytes(2048))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	got := pollValues(t, consumer, 500)
	if !slices.Equal(got[0], numbered("a", 300)) || !slices.Equal(got[1], numbered("b", 200)) {
		t.Errorf("partition 0: %d values, partition 1: %d values, or out of order", len(got[0]), len(got[1]))
	}
}

func TestConsumerDecodesCompressedBatches(t *testing.T) {
	for _, codec := range []Codec{CompressionS2, CompressionZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			f := startFakeCluster(t)
			f.createTopic("orders", 1)
			client := newTestClient(t, f)
			// Each value compresses well on its own, so every batch shrinks
			// under the codec and is stored compressed however the producer
			// splits the records (an idle producer sends its first record
			// at once, in a batch of one).
			values := numbered(strings.Repeat("compressible ", 32), 100)
			produceValues(t, client, "orders", 0, values, WithCompression(codec))
			f.mu.Lock()
			batches := f.topics["orders"].partitions[0].batches
			for i, batch := range batches {
				h, err := protocol.ReadBatchHeader(batch)
				if err != nil || h.Codec != codec {
					t.Errorf("stored batch %d of %d: codec %v (%v), want %v", i, len(batches), h.Codec, err, codec)
				}
			}
			f.mu.Unlock()
			consumer, err := client.NewConsumer()
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
				t.Fatal(err)
			}
			if got := pollValues(t, consumer, 100); !slices.Equal(got[0], values) {
				t.Errorf("got %d values, or not the ones produced", len(got[0]))
			}
		})
	}
}

func TestConsumerSeekPositions(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("old", 10))

	consumer, err := client.NewConsumer(WithFetchMaxWait(50 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", AtOffset(7)); err != nil {
		t.Fatal(err)
	}
	if got := pollValues(t, consumer, 3)[0]; !slices.Equal(got, []string{"old-7", "old-8", "old-9"}) {
		t.Errorf("from offset 7: %v", got)
	}

	if err := consumer.Seek(ctx, "orders", 0, Latest()); err != nil {
		t.Fatal(err)
	}
	produceValues(t, client, "orders", 0, []string{"new"})
	if got := pollValues(t, consumer, 1)[0]; !slices.Equal(got, []string{"new"}) {
		t.Errorf("from latest: %v", got)
	}

	if err := consumer.Seek(ctx, "orders", 0, AtTime(time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := pollValues(t, consumer, 11)[0]; len(got) != 11 || got[0] != "old-0" {
		t.Errorf("from an hour ago: %v", got)
	}
}

func TestConsumerOffsetOutOfRange(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 3))

	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", AtOffset(50)); err != nil {
		t.Fatal(err)
	}
	_, err = consumer.Poll(testContext(t))
	var partitionErr *PartitionError
	if !errors.As(err, &partitionErr) || !errors.Is(err, protocol.CodeOffsetOutOfRange) || partitionErr.Partition != 0 {
		t.Fatalf("got %v, want a partition error with offset out of range", err)
	}

	reset, err := client.NewConsumer(WithOffsetReset(Earliest()))
	if err != nil {
		t.Fatal(err)
	}
	defer reset.Close()
	if err := reset.Assign(testContext(t), "orders", AtOffset(50)); err != nil {
		t.Fatal(err)
	}
	if got := pollValues(t, reset, 3)[0]; !slices.Equal(got, numbered("v", 3)) {
		t.Errorf("after reset: %v", got)
	}
}

func TestConsumerFollowsLeaderChange(t *testing.T) {
	f := startFakeCluster(t, 1, 2)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 5))
	consumer, err := client.NewConsumer(WithFetchMaxWait(20 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	pollValues(t, consumer, 5)
	f.setLeader("orders", 0, 2)
	produceValues(t, client, "orders", 0, []string{"after"})
	if got := pollValues(t, consumer, 1)[0]; !slices.Equal(got, []string{"after"}) {
		t.Errorf("after leader change: %v", got)
	}
}

func TestPollHonoursContext(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	consumer, err := client.NewConsumer(WithFetchMaxWait(10 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if records, err := consumer.Poll(ctx); !errors.Is(err, context.DeadlineExceeded) || len(records) != 0 {
		t.Errorf("poll of an empty topic: %d records, %v", len(records), err)
	}
}

// TestCloseWakesPendingPoll: Close may be called from any goroutine, and a
// Poll waiting for records (with a context that never ends) returns
// ErrClosed rather than waiting for good.
func TestCloseWakesPendingPoll(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	consumer, err := client.NewConsumer(WithFetchMaxWait(50 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	polled := make(chan error, 1)
	go func() {
		_, err := consumer.Poll(context.Background())
		polled <- err
	}()
	time.Sleep(100 * time.Millisecond) // Poll is waiting: the topic is empty
	consumer.Close()
	select {
	case err := <-polled:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Poll pending at Close returned %v, want ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Poll still waiting 3s after Close")
	}
}
