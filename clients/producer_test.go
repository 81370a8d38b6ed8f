package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

func TestProduceSyncAssignsConsecutiveOffsets(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))

	var records []*Record
	for _, v := range numbered("v", 10) {
		records = append(records, &Record{Topic: "orders", Value: []byte(v)})
	}
	if err := producer.ProduceSync(testContext(t), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i, r := range records {
		if r.Offset != uint64(i) || r.Partition != 0 {
			t.Errorf("record %d: partition %d offset %d, want 0 and %d", i, r.Partition, r.Offset, i)
		}
	}
	if got := f.values("orders", 0); !slices.Equal(got, numbered("v", 10)) {
		t.Errorf("stored %v", got)
	}
}

func TestProducerBatchesAsyncRecordsAndKeepsOrder(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithLinger(50 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))

	// The broker holds the first batch (the partition's first record, sent
	// at once) until every record is produced, so how many batches follow
	// depends on the linger, not on how fast the broker answers.
	arrived, release := f.holdProduce()
	const n = 500
	var mu sync.Mutex
	var offsets []uint64
	for i, v := range numbered("v", n) {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(v)}, func(r *Record, err error) {
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			offsets = append(offsets, r.Offset)
			mu.Unlock()
		})
		if i == 0 {
			waitUntil(t, "the first batch reaches the broker", func() bool { return arrived() == 1 })
		}
	}
	release()
	if err := producer.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(offsets) != n || !slices.IsSorted(offsets) {
		t.Fatalf("callbacks saw offsets %v, want %d in order", offsets, n)
	}
	if got := f.values("orders", 0); !slices.Equal(got, numbered("v", n)) {
		t.Errorf("stored values out of order or missing: %d values", len(got))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.produceSeen >= n/10 {
		t.Errorf("%d produce requests for %d records: not batched", f.produceSeen, n)
	}
}

func TestProducerBatchMaxBytesSplitsBatches(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithBatchMaxBytes(4096), WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	value := strings.Repeat("x", 1000)
	var records []*Record
	for range 20 {
		records = append(records, &Record{Topic: "orders", Value: []byte(value)})
	}
	if err := producer.ProduceSync(testContext(t), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	batches := f.topics["orders"].partitions[0].batches
	if len(batches) < 5 {
		t.Errorf("%d batches for 20 KB with a 4 KiB limit", len(batches))
	}
	for _, b := range batches {
		if len(b) > 4096 {
			t.Errorf("batch of %d bytes exceeds 4096", len(b))
		}
	}
}

func TestProducerFollowsNotLeaderInOrder(t *testing.T) {
	f := startFakeCluster(t, 1, 2, 3)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	// Cache broker 1 as leader, then move leadership: every first attempt
	// fails with "not leader, leader is 2".
	if _, err := client.metadata.topic(testContext(t), "orders"); err != nil {
		t.Fatal(err)
	}
	f.setLeader("orders", 0, 2)
	producer, err := client.NewProducer(WithBatchMaxBytes(1024), WithMaxInFlight(4), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	values := numbered(strings.Repeat("p", 200), 40)
	for _, v := range values {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(v)}, func(_ *Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := producer.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.values("orders", 0); !slices.Equal(got, values) {
		t.Errorf("stored %d values, out of order or missing", len(got))
	}
}

func TestProducerRetriesRetriableErrorsOnly(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))

	f.failProduce(protocol.Errorf(protocol.CodeNotReady, "electing"), protocol.Errorf(protocol.CodeTimeout, "slow"))
	rec := &Record{Topic: "orders", Value: []byte("a")}
	if err := producer.ProduceSync(testContext(t), rec).FirstErr(); err != nil {
		t.Fatalf("retriable errors not retried: %v", err)
	}

	f.failProduce(&protocol.Error{Code: protocol.CodeBatchTooLarge, Limit: 10})
	err = producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr()
	if !errors.Is(err, protocol.CodeBatchTooLarge) {
		t.Fatalf("got %v, want batch too large", err)
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a"}) {
		t.Errorf("stored %v", got)
	}
}

func TestProducerRetriesAfterRequestTimeout(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f, WithRequestTimeout(200*time.Millisecond))
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	f.mu.Lock()
	f.dropProduce = 1
	f.mu.Unlock()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a"}) {
		t.Errorf("stored %v", got)
	}
}

func TestProducerGivesUpAtDeliveryTimeout(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	f.setLeader("orders", 0, 99) // no such broker: nobody answers
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithDeliveryTimeout(300 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	start := time.Now()
	err = producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr()
	if !errors.Is(err, ErrNoBrokers) {
		t.Fatalf("got %v, want ErrNoBrokers", err)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("gave up after %v, before the delivery timeout", elapsed)
	}
}

func TestProducerUnknownTopicAndBadPartition(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 2)
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	err = producer.ProduceSync(testContext(t), &Record{Topic: "orders", Partition: 2, Value: []byte("a")}).FirstErr()
	if !errors.Is(err, protocol.CodeBadPartition) {
		t.Errorf("partition 2 of 2: got %v", err)
	}
	err = producer.ProduceSync(testContext(t), &Record{Topic: "nope", Value: []byte("a")}).FirstErr()
	if !errors.Is(err, protocol.CodeUnknownTopic) {
		t.Errorf("unknown topic: got %v", err)
	}
	err = producer.ProduceSync(testContext(t), &Record{Value: []byte("a")}).FirstErr()
	if err == nil {
		t.Error("record without topic accepted")
	}
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Partition: 1, Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := f.values("orders", 1); !slices.Equal(got, []string{"a"}) {
		t.Errorf("partition 1 holds %v", got)
	}
}

func TestKeyHashPartitionerMatchesProtocol(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 4)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	for _, key := range []string{"alice", "bob", "carol", "dave", "erin"} {
		rec := &Record{Topic: "orders", Key: []byte(key), Value: []byte(key)}
		if err := producer.ProduceSync(testContext(t), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if want := protocol.PartitionForKey([]byte(key), 4); int(rec.Partition) != want {
			t.Errorf("key %s went to partition %d, want %d", key, rec.Partition, want)
		}
	}
}

// TestKeyHashPartitionerHashesAnEmptyKey: an empty non-nil key is a key,
// sent where protocol.PartitionForKey puts it (as the plain publish
// subject does with an empty Raftmq-Key header); only a nil key is spread
// round robin.
func TestKeyHashPartitionerHashesAnEmptyKey(t *testing.T) {
	p := KeyHashPartitioner()
	want := protocol.PartitionForKey([]byte{}, 4)
	withoutKey := map[int]bool{}
	for range 8 {
		if got := p.Partition(&Record{Key: []byte{}}, 4); got != want {
			t.Fatalf("empty key went to partition %d, want %d", got, want)
		}
		withoutKey[p.Partition(&Record{}, 4)] = true
	}
	if len(withoutKey) != 4 {
		t.Fatalf("records without a key went to partitions %v, want all 4", withoutKey)
	}
}

func TestRoundRobinPartitionerSpreads(t *testing.T) {
	p := RoundRobinPartitioner()
	counts := make([]int, 3)
	for range 30 {
		counts[p.Partition(&Record{Key: []byte("same")}, 3)]++
	}
	if !slices.Equal(counts, []int{10, 10, 10}) {
		t.Errorf("counts %v", counts)
	}
}

func TestProducerCloseRejectsNewRecords(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := producer.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	err = producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr()
	if !errors.Is(err, ErrClosed) {
		t.Errorf("produce after close: %v", err)
	}
}

func TestProducerOptionsRejectBadValues(t *testing.T) {
	for name, opt := range map[string]ProducerOption{
		"linger":      WithLinger(-1),
		"batch bytes": WithBatchMaxBytes(10),
		"codec":       WithCompression(Codec(9)),
		"acks":        WithAcks(Acks(9)),
		"in flight":   WithMaxInFlight(0),
		"buffered":    WithMaxBufferedRecords(0),
		"delivery":    WithDeliveryTimeout(0),
		"partitioner": WithPartitioner(nil),
	} {
		if _, err := newProducerConfig([]ProducerOption{opt}); err == nil {
			t.Errorf("%s: bad value accepted", name)
		}
	}
}

// TestAttemptDeadlineIsRetriable: when an attempt's own deadline ends while
// it waits for metadata (a leader just stopped), the batch is retried until
// its delivery deadline, not failed at once.
func TestAttemptDeadlineIsRetriable(t *testing.T) {
	if retriable(context.DeadlineExceeded) {
		t.Fatal("a bare context deadline must not count as retriable everywhere")
	}
	if err := attemptError(context.DeadlineExceeded); !retriable(err) || !errors.Is(err, protocol.CodeTimeout) {
		t.Fatalf("attemptError(DeadlineExceeded) = %v, want a retriable timeout", err)
	}
	other := errors.New("boom")
	if attemptError(other) != other {
		t.Fatal("attemptError changed an unrelated error")
	}
}

// TestMetadataRefreshDeadlineIsRetriable: a metadata refresh whose
// caller's deadline ends while the load is under way reports a retriable
// request timeout (a producer or consumer retries it), while a cancelled
// context stays a plain, final cancellation.
func TestMetadataRefreshDeadlineIsRetriable(t *testing.T) {
	m := newMetadataCache(&Client{})
	m.topics["orders"] = &topicEntry{loading: make(chan struct{})} // a load that does not end

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := m.refresh(expired, "orders")
	if !retriable(err) || !errors.Is(err, protocol.CodeTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("refresh past its deadline = %v, want a retriable timeout that still matches context.DeadlineExceeded", err)
	}

	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := m.refresh(cancelled, "orders"); retriable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("refresh with a cancelled context = %v, want context.Canceled, not retriable", err)
	}
}

// TestProduceWaitsForBufferRoom: with WithMaxBufferedRecords(n), the
// record after n unacknowledged ones waits until one completes, or fails
// with its context's error.
func TestProduceWaitsForBufferRoom(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	f.mu.Lock()
	f.dropProduce = 1 << 20 // nothing is acknowledged until released below
	f.mu.Unlock()
	client := newTestClient(t, f, WithRequestTimeout(100*time.Millisecond))
	producer, err := client.NewProducer(WithMaxBufferedRecords(2), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	acked := make(chan error, 3)
	done := func(_ *Record, err error) { acked <- err }
	for _, v := range []string{"a", "b"} {
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(v)}, done)
	}
	full, cancel := context.WithTimeout(testContext(t), 50*time.Millisecond)
	defer cancel()
	producer.Produce(full, &Record{Topic: "orders", Value: []byte("c")}, done)
	wait := testContext(t)
	next := func() error {
		t.Helper()
		select {
		case err := <-acked:
			return err
		case <-wait.Done():
			t.Fatal("a produce callback never came")
			return nil
		}
	}
	if err := next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third record with a full buffer: %v, want its context's deadline", err)
	}

	third := make(chan struct{})
	go func() {
		defer close(third)
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("c")}, done)
	}()
	f.mu.Lock()
	f.dropProduce = 0 // the retries of a and b get answered
	f.mu.Unlock()
	select {
	case <-third: // room was freed, so Produce returned
	case <-wait.Done():
		t.Fatal("Produce still waits for room after the buffered records were acknowledged")
	}
	for range 3 {
		if err := next(); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("partition holds %q, want a b c", got)
	}
}

// TestRecordSizeBoundCoversEncodedSize: the bound add checks first is never
// below a record's exact encoded size, whatever its key, value, headers and
// timestamp distance from the batch's first record, so no batch exceeds
// its max bytes because of it.
func TestRecordSizeBoundCoversEncodedSize(t *testing.T) {
	big := make([]byte, 1<<16)
	for _, key := range [][]byte{nil, {}, []byte("k"), big[:200]} {
		for _, value := range [][]byte{nil, {}, big[:100], big} {
			for _, headers := range [][]Header{nil, {{Key: "h", Value: nil}}, {{Key: strings.Repeat("x", 300), Value: big[:1000]}, {Key: "", Value: []byte{}}}} {
				for _, delta := range []int64{0, 1, -1, 1 << 40, -(1 << 62), 1<<63 - 1} {
					rec := &Record{Key: key, Value: value, Headers: headers}
					r := protocol.Record{Timestamp: delta, Key: key, Value: value}
					for _, h := range headers {
						r.Headers = append(r.Headers, protocol.RecordHeader{Key: h.Key, Value: h.Value})
					}
					exact := protocol.EncodedRecordSize(&r, 0)
					if bound := recordSizeBound(bufferedSize(rec), len(headers)); bound < exact {
						t.Fatalf("key %d value %d headers %d delta %d: bound %d below the encoded size %d",
							len(key), len(value), len(headers), delta, bound, exact)
					}
				}
			}
		}
	}
}

// TestProducerClockFollowsTheWallClock: the producer's clock agrees with
// time.Now (monotonically exactly, in wall time within a small slack for
// clock slewing), and a base reading older than clockRebase is replaced.
func TestProducerClockFollowsTheWallClock(t *testing.T) {
	var c producerClock
	for i := range 1000 {
		before := time.Now()
		got := c.now()
		after := time.Now()
		if got.Before(before) || got.After(after) {
			t.Fatalf("reading %d: %v outside [%v, %v] on the monotonic clock", i, got, before, after)
		}
		const slack = 10 * time.Millisecond
		if got.UnixNano() < before.UnixNano()-int64(slack) || got.UnixNano() > after.UnixNano()+int64(slack) {
			t.Fatalf("reading %d: wall time %d outside [%d, %d] by more than %v", i, got.UnixNano(), before.UnixNano(), after.UnixNano(), slack)
		}
	}
	old := time.Now().Add(-2 * clockRebase)
	c.base.Store(&old)
	before := time.Now()
	got := c.now()
	if base := c.base.Load(); base.Before(before) || got.Before(before) {
		t.Fatalf("a base %v old was kept: base %v, reading %v, now %v", 2*clockRebase, base, got, before)
	}
}

// TestReconnectBufferFullIsRetried: while the NATS connection reconnects,
// publishes go to a buffer of bounded size and fail with
// nats.ErrReconnectBufExceeded once it is full. That is the passing outage
// retries exist for: the records are retried until their delivery timeout
// rather than failing at once (and, with idempotence, abandoning the
// partition's window and starting a new epoch).
func TestReconnectBufferFullIsRetried(t *testing.T) {
	if !retriable(fmt.Errorf("clients: publish: %w", nats.ErrReconnectBufExceeded)) {
		t.Error("nats.ErrReconnectBufExceeded is not retriable")
	}
	f := startFakeCluster(t)
	f.createTopic("big", 4)
	client := newTestClient(t, f, WithNATSOptions(nats.ReconnectBufSize(64<<10)))
	producer, err := client.NewProducer(WithDeliveryTimeout(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = producer.Close(ctx)
	}()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "big", Value: []byte("metadata")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	f.server.Shutdown()
	waitUntil(t, "the client is reconnecting", func() bool { return client.Conn().IsReconnecting() })

	var mu sync.Mutex
	var failed error
	value := make([]byte, 16<<10)
	for i := range 64 { // 1 MiB over 4 partitions, 16 times the buffer
		producer.Produce(testContext(t), &Record{Topic: "big", Key: []byte(fmt.Sprint(i)), Value: value}, func(_ *Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failed == nil {
				failed = err
			}
		})
	}
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	if failed != nil {
		t.Fatalf("a record failed a second into the outage, its delivery timeout 30s: %v", failed)
	}
}
