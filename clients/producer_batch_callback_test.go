package clients

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestProducerBatchCallbackReportsBatchesInOrder: records produced without
// a callback reach WithBatchCallback a batch at a time, each once, with
// its offset; a record with a callback of its own gets that one, in
// produce order between the batch callback's calls; a record failing at
// once reaches the batch callback alone, on the caller's goroutine.
func TestProducerBatchCallbackReportsBatchesInOrder(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	var mu sync.Mutex
	var reported []string // values, in callback order
	var calls []int       // records per batch callback call
	var failed error
	producer, err := client.NewProducer(WithLinger(time.Hour), WithBatchCallback(func(records []*Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = err
			return
		}
		calls = append(calls, len(records))
		for _, r := range records {
			if want, err := strconv.Atoi(strings.TrimPrefix(string(r.Value), "v-")); err != nil || r.Offset != uint64(want) {
				t.Errorf("record %s has offset %d", r.Value, r.Offset)
			}
			reported = append(reported, string(r.Value))
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))

	// The broker holds the first batch (the first record, sent at once)
	// until every record is produced: the others wait in one open batch
	// (the linger is an hour) and leave together once it is acknowledged.
	arrived, release := f.holdProduce()
	const n, own = 300, 150 // record own has a callback of its own
	values := numbered("v", n)
	for i, v := range values {
		var done ProduceCallback
		if i == own {
			done = func(r *Record, err error) {
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				reported = append(reported, "own:"+string(r.Value))
				mu.Unlock()
			}
		}
		producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte(v)}, done)
		if i == 0 {
			waitUntil(t, "the first batch reaches the broker", func() bool { return arrived() == 1 })
		}
	}
	release()
	if err := producer.Flush(testContext(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	want := slices.Clone(values)
	want[own] = "own:" + want[own]
	if !slices.Equal(reported, want) {
		t.Errorf("reported %v\nwant %v", reported, want)
	}
	if !slices.Equal(calls, []int{1, own - 1, n - own - 1}) {
		t.Errorf("batch callback calls of %v records, want [1 %d %d]", calls, own-1, n-own-1)
	}
	mu.Unlock()

	if err := producer.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	producer.Produce(testContext(t), &Record{Topic: "orders", Value: []byte("late")}, nil)
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(failed, ErrClosed) {
		t.Errorf("a record produced after Close reported %v, want ErrClosed", failed)
	}
}

// TestProducerSeesMorePartitionsAfterMetadataMaxAge: the producer's
// remembered partition count of a topic gives way once the metadata
// reaches its max age.
func TestProducerSeesMorePartitionsAfterMetadataMaxAge(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f, WithMetadataMaxAge(50*time.Millisecond))
	producer, err := client.NewProducer(WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	err = producer.ProduceSync(testContext(t), &Record{Topic: "orders", Partition: 1, Value: []byte("b")}).FirstErr()
	if !errors.Is(err, protocol.CodeBadPartition) {
		t.Fatalf("partition 1 of a 1-partition topic: %v, want CodeBadPartition", err)
	}
	f.createTopic("orders", 2)
	waitUntil(t, "partition 1 takes records", func() bool {
		return producer.ProduceSync(testContext(t), &Record{Topic: "orders", Partition: 1, Value: []byte("b")}).FirstErr() == nil
	})
}

// TestProducerAlternatingTopicsDoNotAllocatePerRecord: a producer whose
// records alternate between two topics misses its last-topic fast path
// per record, and the partition count it then takes from the metadata
// cache is shared, not allocated per record.
func TestProducerAlternatingTopicsDoNotAllocatePerRecord(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	f := startFakeCluster(t)
	f.createTopic("a", 1)
	f.createTopic("b", 1)
	client := newTestClient(t, f)
	producer, err := client.NewProducer(WithLinger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	records := []*Record{{Topic: "a", Value: []byte("x")}, {Topic: "b", Value: []byte("x")}}
	ctx := testContext(t)
	// Both topics' metadata loaded and their partitions' first batches
	// sent (a record to an idle partition leaves at once).
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// testing.AllocsPerRun counts the mallocs of the whole process, so
	// whatever else allocates meanwhile counts too: on a loaded machine the
	// package's dev cluster (TestMain) can still be busy with an earlier
	// test's work, a broker it restarted catching up, say. Others only add
	// to the producer's count, never take from it, and a producer that
	// allocates per record does so in every measurement: measure again,
	// for a while, until one is quiet.
	const runs = 2000
	deadline := time.Now().Add(10 * time.Second)
	var measured []float64
	for attempt := 0; attempt < 20 && time.Now().Before(deadline); attempt++ {
		produced := make([]Record, runs+1) // AllocsPerRun calls once more to warm up
		var i int
		allocs := testing.AllocsPerRun(runs, func() {
			rec := &produced[i]
			rec.Topic, rec.Value = records[i%2].Topic, records[i%2].Value
			producer.Produce(ctx, rec, nil)
			i++
		})
		if err := producer.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		measured = append(measured, allocs)
		if allocs < 1 {
			return
		}
	}
	t.Fatalf("allocations per record in each of %d measurements: %v, want less than one", len(measured), measured)
}
