package clients

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// newIdleProducer returns a producer through client whose partition
// producers retire after idleTimeout with nothing to do; it is closed
// with the test.
func newIdleProducer(t *testing.T, client *Client, idleTimeout time.Duration, opts ...ProducerOption) *Producer {
	t.Helper()
	producer, err := client.NewProducer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	producer.config.partitionIdleTimeout = idleTimeout // before any partition producer starts
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = producer.Close(ctx)
	})
	return producer
}

// partitionProducerGoroutines counts the goroutines running a partition
// producer's run, of any producer of the test binary.
func partitionProducerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("clients.(*partitionProducer).run("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// checkSequenceContinues checks that the batches stored in a partition
// carry one producer id and epoch and sequences that follow each other
// from 0.
func checkSequenceContinues(t *testing.T, f *fakeCluster, topic string, partition int, producerID int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	next := int32(0)
	for i, batch := range f.topics[topic].partitions[partition].batches {
		header, err := protocol.ReadBatchHeader(batch)
		if err != nil {
			t.Fatal(err)
		}
		if header.ProducerID != producerID || header.ProducerEpoch != 0 || header.BaseSequence != next {
			t.Errorf("partition %d batch %d: producer %d epoch %d sequence %d, want producer %d epoch 0 sequence %d",
				partition, i, header.ProducerID, header.ProducerEpoch, header.BaseSequence, producerID, next)
		}
		next = header.BaseSequence + int32(header.RecordCount)
	}
}

// TestIdlePartitionProducersRetireAndKeepTheirSequence: a producer that
// wrote to many partitions and then went quiet keeps no goroutine and no
// map entry for them once the idle timeout has passed, and a partition
// written to again continues its idempotent sequence (same producer id
// and epoch, the next sequence), so the broker takes its batches. Before,
// every partition ever written kept its goroutine until Close.
func TestIdlePartitionProducersRetireAndKeepTheirSequence(t *testing.T) {
	f := startFakeCluster(t)
	const partitions = 20
	f.createTopic("tenants", partitions)
	client := newTestClient(t, f)
	before := partitionProducerGoroutines()
	producer := newIdleProducer(t, client, 100*time.Millisecond, WithLinger(0), WithPartitioner(ManualPartitioner()))
	ctx := testContext(t)
	var records []*Record
	for partition := range partitions {
		for i := range 2 {
			records = append(records, &Record{Topic: "tenants", Partition: uint32(partition), Value: fmt.Appendf(nil, "first-%d", i)})
		}
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the idle partition producers have retired", func() bool {
		producer.mu.Lock()
		left := len(producer.partitions)
		producer.mu.Unlock()
		return left == 0 && partitionProducerGoroutines() == before
	})

	for i := range 2 {
		rec := &Record{Topic: "tenants", Partition: 3, Value: fmt.Appendf(nil, "again-%d", i)}
		if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"first-0", "first-1", "again-0", "again-1"}
	if got := f.values("tenants", 3); !slices.Equal(got, want) {
		t.Fatalf("partition 3 holds %q, want %q", got, want)
	}
	checkSequenceContinues(t, f, "tenants", 3, producer.producerID)
}

// TestRetiringPartitionProducerLosesNoRecord: partition producers retire
// as soon as they have nothing to do while several goroutines produce to
// a few partitions in bursts, so records keep arriving while a partition
// producer decides to exit. Every record is written once, in a sequence
// that continues across the restarts.
func TestRetiringPartitionProducerLosesNoRecord(t *testing.T) {
	f := startFakeCluster(t)
	const partitions, writers, bursts = 3, 4, 50
	f.createTopic("churn", partitions)
	client := newTestClient(t, f)
	producer := newIdleProducer(t, client, time.Microsecond, WithLinger(0), WithPartitioner(ManualPartitioner()))
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, writers*bursts)
	for writer := range writers {
		wg.Go(func() {
			for burst := range bursts {
				rec := &Record{Topic: "churn", Partition: uint32((writer + burst) % partitions), Value: fmt.Appendf(nil, "%d-%d", writer, burst)}
				if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var stored []string
	for partition := range partitions {
		stored = append(stored, f.values("churn", partition)...)
		checkSequenceContinues(t, f, "churn", partition, producer.producerID)
	}
	if len(stored) != writers*bursts {
		t.Fatalf("%d records stored, want %d", len(stored), writers*bursts)
	}
}

// TestRecordOnItsWayKeepsItsPartitionProducer: a record that Produce has
// taken a partition producer for, and not yet added to it, keeps that
// partition producer from retiring however long it takes to arrive, so it
// is written rather than failed as closed. Another partition, written
// after the first and retired, shows that the idle timeout has passed;
// its next record gets a new partition producer, though the retired one
// was the last handed out.
func TestRecordOnItsWayKeepsItsPartitionProducer(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("slow", 2)
	client := newTestClient(t, f)
	producer := newIdleProducer(t, client, 20*time.Millisecond, WithLinger(0), WithPartitioner(ManualPartitioner()))
	ctx := testContext(t)
	if err := producer.ProduceSync(ctx, &Record{Topic: "slow", Partition: 0, Value: []byte("first")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Produce's first half: the partition producer is taken, the record
	// not yet added.
	onItsWay := &Record{Topic: "slow", Partition: 0, Value: []byte("on its way"), Timestamp: time.Now()}
	size := bufferedSize(onItsWay)
	taken, _, err := producer.partitionProducer(ctx, topicPartition{"slow", 0}, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(ctx, &Record{Topic: "slow", Partition: 1, Value: []byte("later")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "partition 1's producer has retired", func() bool {
		producer.mu.Lock()
		defer producer.mu.Unlock()
		return producer.partitions[topicPartition{"slow", 1}] == nil
	})
	done := make(chan error, 1)
	taken.add(pendingRecord{record: onItsWay, done: func(_ *Record, err error) { done <- err }, size: size})
	if err := awaitOutcome(t, done, "the record on its way"); err != nil {
		t.Fatal(err)
	}
	if got, want := f.values("slow", 0), []string{"first", "on its way"}; !slices.Equal(got, want) {
		t.Fatalf("partition 0 holds %q, want %q", got, want)
	}
	// The retired producer was the last one handed out: not again.
	if err := producer.ProduceSync(ctx, &Record{Topic: "slow", Partition: 1, Value: []byte("again")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestRetiredPartitionIdentitiesAreForgottenInTime: the identity a
// retired partition producer leaves for the partition's next one is kept
// for retiredSequenceKeep only, so a producer that wrote once to many
// short-lived partitions does not keep an entry for each for ever; a
// partition written to after its entry went takes a new producer id
// (sequence 0 of a producer the partition never saw, which it takes).
// Before, every partition ever written kept its entry until the producer
// was dropped (found in review).
func TestRetiredPartitionIdentitiesAreForgottenInTime(t *testing.T) {
	f := startFakeCluster(t)
	const partitions = 10
	f.createTopic("tenants", partitions+1)
	producer := newIdleProducer(t, newTestClient(t, f), 20*time.Millisecond, WithLinger(0), WithPartitioner(ManualPartitioner()))
	producer.config.retiredSequenceKeep = 500 * time.Millisecond
	ctx := testContext(t)
	retired := func(want int) func() bool {
		return func() bool {
			producer.mu.Lock()
			defer producer.mu.Unlock()
			return len(producer.partitions) == 0 && len(producer.sequences) == want
		}
	}
	var records []*Record
	for partition := range partitions {
		records = append(records, &Record{Topic: "tenants", Partition: uint32(partition), Value: []byte("first")})
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the partition producers retire", retired(partitions))
	start := time.Now()
	waitUntil(t, "their entries age", func() bool { return time.Since(start) > 2*producer.config.retiredSequenceKeep })
	// Another partition's producer retires: the pass drops the old entries.
	if err := producer.ProduceSync(ctx, &Record{Topic: "tenants", Partition: partitions, Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "only the late partition's entry is left", retired(1))
	if err := producer.ProduceSync(ctx, &Record{Topic: "tenants", Partition: 3, Value: []byte("again")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	batches := f.topics["tenants"].partitions[3].batches
	header, err := protocol.ReadBatchHeader(batches[len(batches)-1])
	if err != nil {
		t.Fatal(err)
	}
	if header.ProducerID == producer.producerID || header.ProducerID <= 0 || header.ProducerEpoch != 0 || header.BaseSequence != 0 {
		t.Fatalf("partition 3 written again after its entry went: producer %d epoch %d sequence %d, want a new producer id (not %d) at epoch 0 sequence 0",
			header.ProducerID, header.ProducerEpoch, header.BaseSequence, producer.producerID)
	}
}
