package clients

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// produceSpy records the batches of every produce request to broker 1.
type produceSpy struct {
	mu      sync.Mutex
	batches [][]byte
}

func spyOnProduce(t *testing.T, f *fakeCluster) *produceSpy {
	t.Helper()
	spy := &produceSpy{}
	sub, err := f.conn.Subscribe(protocol.SubjectBrokerProduce(protocol.DefaultSubjectPrefix, 1), func(m *nats.Msg) {
		request, err := protocol.DecodeProduceRequest(m.Data)
		if err != nil {
			t.Errorf("produce request: %v", err)
			return
		}
		spy.mu.Lock()
		spy.batches = append(spy.batches, bytes.Clone(request.Batch))
		spy.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return spy
}

// headers returns the headers of the recorded batches once there are n.
func (s *produceSpy) headers(t *testing.T, n int) ([]protocol.BatchHeader, [][]byte) {
	t.Helper()
	ctx := testContext(t)
	for {
		s.mu.Lock()
		if len(s.batches) >= n {
			batches := append([][]byte(nil), s.batches...)
			s.mu.Unlock()
			headers := make([]protocol.BatchHeader, len(batches))
			for i, b := range batches {
				h, err := protocol.VerifyBatch(b)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				headers[i] = h
			}
			return headers, batches
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("saw fewer than %d produce requests", n)
		case <-time.After(time.Millisecond):
		}
	}
}

func TestIdempotentProducerNumbersRecordsPerPartition(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	for _, count := range []int{2, 1, 3} {
		var records []*Record
		for _, v := range numbered("v", count) {
			records = append(records, &Record{Topic: "orders", Value: []byte(v)})
		}
		if err := producer.ProduceSync(testContext(t), records...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A partition with nothing in flight sends its first record at once,
	// so a ProduceSync's records may leave as more than one batch: each
	// batch's sequence continues where the one before ended.
	headers := spy.headersOfRecords(t, 6)
	next := int32(0)
	for i, h := range headers {
		if h.ProducerID <= 0 || h.ProducerID != headers[0].ProducerID || h.ProducerEpoch != 0 || h.BaseSequence != next {
			t.Errorf("batch %d: producer %d epoch %d sequence %d; want producer %d epoch 0 sequence %d",
				i, h.ProducerID, h.ProducerEpoch, h.BaseSequence, headers[0].ProducerID, next)
		}
		next += int32(h.RecordCount)
	}
}

// headersOfRecords returns the headers of the recorded batches once they
// hold records records in all, failing if they hold more.
func (s *produceSpy) headersOfRecords(t *testing.T, records int) []protocol.BatchHeader {
	t.Helper()
	for n := 1; ; n++ {
		headers, _ := s.headers(t, n)
		total := 0
		for _, h := range headers {
			total += int(h.RecordCount)
		}
		switch {
		case total == records:
			return headers
		case total > records:
			t.Fatalf("batches hold %d records, want %d", total, records)
		}
		n = len(headers)
	}
}

func TestIdempotentRetryResendsIdenticalBytes(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
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
	// The first attempt goes unanswered, so there are at least two. On a
	// loaded machine a retry can also outlast the short request timeout
	// and be sent again: every attempt must carry the same bytes.
	_, batches := spy.headers(t, 2)
	for i, batch := range batches[1:] {
		if !bytes.Equal(batches[0], batch) {
			t.Fatalf("attempt %d of %d sent other bytes than the first attempt", i+2, len(batches))
		}
	}
}

func TestIdempotentProducerStartsNewEpochAfterFailedBatch(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
	client := newTestClient(t, f)
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	f.failProduce(protocol.Errorf(protocol.CodeDuplicateSequence, "forgotten"))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr(); !errors.Is(err, protocol.CodeDuplicateSequence) {
		t.Fatalf("got %v, want duplicate_sequence", err)
	}
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("c")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	headers, _ := spy.headers(t, 3)
	if h := headers[2]; h.ProducerEpoch != 1 || h.BaseSequence != 0 || h.ProducerID != headers[0].ProducerID {
		t.Fatalf("after a failed batch: producer %d epoch %d sequence %d; want producer %d epoch 1 sequence 0",
			h.ProducerID, h.ProducerEpoch, h.BaseSequence, headers[0].ProducerID)
	}
}

// refuseForgottenProducer makes the fake answer batches of epoch 0 past
// sequence 0 unknown_producer, as a partition that forgot the producer
// does.
func refuseForgottenProducer(f *fakeCluster) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuseBatch = func(h protocol.BatchHeader) *protocol.Error {
		if h.ProducerEpoch == 0 && h.BaseSequence > 0 {
			return protocol.Errorf(protocol.CodeUnknownProducer, "forgotten")
		}
		return nil
	}
}

// TestIdempotentProducerForgottenByPartitionStartsNewEpoch: a batch
// answered unknown_producer, with every earlier batch acknowledged, is
// resent at once under a new epoch from sequence 0 and delivered; the
// next batch follows it. Before, the SDK resent the same bytes until the
// delivery timeout and failed the batch, although it was not written.
func TestIdempotentProducerForgottenByPartitionStartsNewEpoch(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
	client := newTestClient(t, f)
	const deliveryTimeout = 5 * time.Second
	producer, err := client.NewProducer(WithDeliveryTimeout(deliveryTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	refuseForgottenProducer(f)
	start := time.Now()
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr(); err != nil {
		t.Fatalf("record after the partition forgot the producer: %v (after %v)", err, time.Since(start))
	}
	if took := time.Since(start); took > deliveryTimeout/2 {
		t.Fatalf("record after the partition forgot the producer took %v", took)
	}
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("c")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("partition holds %q, want a, b, c", got)
	}
	headers, _ := spy.headers(t, 4)
	type numbering struct {
		epoch    int16
		sequence int32
	}
	var got []numbering
	for _, h := range headers {
		if h.ProducerID != headers[0].ProducerID {
			t.Fatalf("producer id changed: %d, then %d", headers[0].ProducerID, h.ProducerID)
		}
		got = append(got, numbering{h.ProducerEpoch, h.BaseSequence})
	}
	if want := []numbering{{0, 0}, {0, 1}, {1, 0}, {1, 1}}; !slices.Equal(got, want) {
		t.Fatalf("batches sent as (epoch, sequence) %v, want %v", got, want)
	}
}

// TestIdempotentProducerForgottenAfterUnclearAttemptDoesNotRenumber: when
// an earlier attempt of the batch got no answer (it may have been written
// before the partition forgot the producer), unknown_producer does not
// renumber it, which could write it twice: it is resent unchanged until
// its delivery timeout, as after out_of_order_sequence.
func TestIdempotentProducerForgottenAfterUnclearAttemptDoesNotRenumber(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
	client := newTestClient(t, f, WithRequestTimeout(200*time.Millisecond))
	producer, err := client.NewProducer(WithDeliveryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.dropProduce = 1
	f.mu.Unlock()
	refuseForgottenProducer(f)
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("b")}).FirstErr(); !errors.Is(err, protocol.CodeUnknownProducer) {
		t.Fatalf("got %v, want unknown_producer at the delivery timeout", err)
	}
	headers, _ := spy.headers(t, 3)
	for i, h := range headers[1:] {
		if h.ProducerEpoch != 0 || h.BaseSequence != 1 {
			t.Fatalf("attempt %d of the second batch: epoch %d sequence %d, want it unchanged (epoch 0, sequence 1)", i+1, h.ProducerEpoch, h.BaseSequence)
		}
	}
	if got := f.values("orders", 0); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("partition holds %q, want a", got)
	}
}

func TestWithIdempotenceOff(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	spy := spyOnProduce(t, f)
	client := newTestClient(t, f)
	if _, err := client.NewProducer(WithMaxInFlight(6)); err == nil {
		t.Fatal("an idempotent producer accepted 6 batches in flight")
	}
	producer, err := client.NewProducer(WithIdempotence(false), WithMaxInFlight(6))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(testContext(t))
	if err := producer.ProduceSync(testContext(t), &Record{Topic: "orders", Value: []byte("a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if headers, _ := spy.headers(t, 1); headers[0].ProducerID != -1 {
		t.Fatalf("producer id %d without idempotence, want -1", headers[0].ProducerID)
	}
}

// TestLateRepliesAfterAbandonedBatchesDoNotStallTheClient: a batch that
// fails for good abandons the batches in flight behind it, whose attempts
// stay outstanding while new batches go out, so more replies can be due
// than the partition's reply buffer (WithMaxInFlight) holds. Once Close
// gave up on them nobody reads that buffer; the late replies must be
// dropped, not block the client's one reply-delivery goroutine, which
// every producer of the client needs.
func TestLateRepliesAfterAbandonedBatchesDoNotStallTheClient(t *testing.T) {
	f := startFakeCluster(t)
	const prefix = "late"
	f.serveQuietPartition(prefix) // metadata: topic "t", partition 0, leader 1
	requests := make(chan *nats.Msg, 100)
	f.subscribe(protocol.SubjectBrokerProduce(prefix, 1), func(m *nats.Msg) { requests <- m })
	if err := f.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	client := newTestClient(t, f, WithSubjectPrefix(prefix), WithRequestTimeout(time.Second))
	producer, err := client.NewProducer(WithLinger(0), WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	produceOne := func() *nats.Msg {
		t.Helper()
		producer.Produce(testContext(t), &Record{Topic: "t", Value: []byte("v")}, nil)
		select {
		case m := <-requests:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no produce request")
			return nil
		}
	}
	var outstanding []*nats.Msg
	for range maxIdempotentInFlight {
		outstanding = append(outstanding, produceOne())
	}
	// The first batch fails for good, abandoning the four behind it, and
	// five new batches go out: nine attempts outstanding.
	_ = outstanding[0].Respond(protocol.AppendProduceReply(nil, &protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeCorruptBatch, "bad")}))
	outstanding = outstanding[1:]
	time.Sleep(100 * time.Millisecond)
	for range maxIdempotentInFlight {
		outstanding = append(outstanding, produceOne())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_ = producer.Close(ctx) // gives up waiting for the replies
	cancel()
	for _, m := range outstanding {
		_ = m.Respond(protocol.AppendProduceReply(nil, &protocol.ProduceReply{BaseOffset: 0}))
	}

	go func() {
		for m := range requests {
			_ = m.Respond(protocol.AppendProduceReply(nil, &protocol.ProduceReply{BaseOffset: 42}))
		}
	}()
	fresh, err := client.NewProducer(WithDeliveryTimeout(3*time.Second), WithPartitioner(ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	if err := fresh.ProduceSync(testContext(t), &Record{Topic: "t", Value: []byte("fresh")}).FirstErr(); err != nil {
		t.Fatalf("another producer of the client, the broker answering at once: %v", err)
	}
}

// TestBatchThatWouldPassTheTopSequenceStartsANewEpoch: a batch whose
// sequences would pass 2^31-1 is stamped with the next epoch at sequence
// 0 (brokers refuse a range that wraps); before, it was stamped in the old
// epoch with a range that wrapped, and the epoch moved on only after it.
func TestBatchThatWouldPassTheTopSequenceStartsANewEpoch(t *testing.T) {
	s := producerSequence{producerID: 7, epoch: 3, nextSequence: math.MaxInt32 - 4}
	var builder protocol.BatchBuilder
	for range 10 {
		if err := builder.Add(protocol.Record{Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	batch := &pendingBatch{builder: &builder}
	s.stamp(batch, builder.Len())
	data, err := builder.Build(protocol.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	h, err := protocol.ReadBatchHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	if h.ProducerEpoch != 4 || h.BaseSequence != 0 {
		t.Fatalf("stamped epoch %d sequence %d, want epoch 4 sequence 0", h.ProducerEpoch, h.BaseSequence)
	}
	s.commit(batch, builder.Len())
	if s.epoch != 4 || s.nextSequence != 10 {
		t.Fatalf("after the batch: epoch %d, next sequence %d", s.epoch, s.nextSequence)
	}
}
