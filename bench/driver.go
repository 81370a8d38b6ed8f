package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// producerState is one producer's accounting. sent and sentByPartition are
// written by the producer's goroutine; the rest under mu from ack callbacks.
type producerState struct {
	id              int
	workload        Workload
	owned           []int
	clock           clock
	sent            atomic.Int64
	sentByPartition []int64
	// taken holds buffers the producer took from free and has not sent
	// yet (its goroutine only).
	taken [][]byte
	// returned wakes a producer waiting for free buffers (capacity 1).
	returned chan struct{}

	mu               sync.Mutex
	acked            idSet
	ackedByPartition []int64
	ackErrors        int64
	ackDuplicates    int64
	ackForeign       int64
	firstErr         error
	lastAckNanos     int64
	latency          *hdrhistogram.Histogram
	progress         *atomic.Int64
	// The window: free holds the payload buffers not in flight, and
	// inFlight counts the others (taken, sent or being acknowledged), so
	// that free never holds more than the window. The producer takes
	// every free buffer at once, so the lock is taken once per refill,
	// not per record (a channel receive per record cost 3% of a 100 B
	// publish's CPU).
	free     [][]byte
	inFlight int
}

func newProducerState(w Workload, id int, c clock, progress *atomic.Int64) *producerState {
	ps := &producerState{
		id:               id,
		workload:         w,
		owned:            w.ownedPartitions(id),
		clock:            c,
		returned:         make(chan struct{}, 1),
		sentByPartition:  make([]int64, w.Partitions),
		ackedByPartition: make([]int64, w.Partitions),
		latency:          newLatencyHistogram(),
		progress:         progress,
	}
	ps.free = newPayloadBuffers(w.window(), w.RecordSize, uint64(id)+1)
	ps.taken = make([][]byte, 0, len(ps.free))
	return ps
}

// takeBuffer returns a free payload buffer, waiting until one is
// acknowledged when the whole window is in flight. Producer goroutine only.
func (ps *producerState) takeBuffer(ctx context.Context) ([]byte, error) {
	for len(ps.taken) == 0 {
		ps.mu.Lock()
		ps.taken, ps.free = ps.free, ps.taken
		ps.inFlight += len(ps.taken)
		ps.mu.Unlock()
		if len(ps.taken) > 0 {
			break
		}
		select {
		case <-ps.returned:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	n := len(ps.taken) - 1
	buffer := ps.taken[n]
	ps.taken[n] = nil
	ps.taken = ps.taken[:n]
	return buffer, nil
}

// putBufferLocked returns a buffer to the window (under mu); a buffer
// beyond the window is not one of ours and is dropped.
func (ps *producerState) putBufferLocked(buffer []byte) {
	if ps.inFlight == 0 {
		return
	}
	ps.inFlight--
	ps.free = append(ps.free, buffer)
	if len(ps.free) == 1 {
		select {
		case ps.returned <- struct{}{}:
		default:
		}
	}
}

func (ps *producerState) putBuffer(buffer []byte) {
	ps.mu.Lock()
	ps.putBufferLocked(buffer)
	ps.mu.Unlock()
}

func (ps *producerState) partitionOf(sequence uint64) int {
	return ps.owned[(sequence/partitionChunk)%uint64(len(ps.owned))]
}

// onAck is the producer's AckFunc.
func (ps *producerState) onAck(payload []byte, err error) {
	now := ps.clock.now()
	ps.mu.Lock()
	ps.ackLocked(payload, err, now, ps.sent.Load())
	ps.mu.Unlock()
	ps.progress.Add(1)
}

// onAcks is onAck for n records whose outcome the target learned at once
// (the records of one batch; see batchAckTarget): one clock read, one lock
// and one progress update for all of them, where onAck takes each per
// record. Every record's latency is still its own: the acknowledgement's
// time minus that record's intended send time. payload(i) is the i-th
// record's payload.
func (ps *producerState) onAcks(n int, payload func(i int) []byte, err error) {
	now := ps.clock.now()
	ps.mu.Lock()
	// Every record acknowledged here was sent before this load.
	sent := ps.sent.Load()
	for i := range n {
		ps.ackLocked(payload(i), err, now, sent)
	}
	ps.mu.Unlock()
	ps.progress.Add(int64(n))
}

// ackLocked accounts one record's outcome at clock reading now, when the
// producer had sent sent records (under mu).
func (ps *producerState) ackLocked(payload []byte, err error, now, sent int64) {
	id, intended, ok := readPayloadHeader(payload)
	producer, sequence := splitRecordID(id)
	switch {
	case !ok || producer != ps.id || sequence >= uint64(sent):
		ps.ackForeign++
	case err != nil:
		ps.ackErrors++
		if ps.firstErr == nil {
			ps.firstErr = err
		}
	case ps.acked.add(sequence):
		ps.ackDuplicates++
	default:
		ps.ackedByPartition[ps.partitionOf(sequence)]++
		recordLatency(ps.latency, time.Duration(now-intended))
		ps.lastAckNanos = max(ps.lastAckNanos, now)
	}
	if ok && cap(payload) >= ps.workload.RecordSize {
		ps.putBufferLocked(payload[:ps.workload.RecordSize])
	}
}

// batchAckTarget is a Target whose producers learn the outcomes of many
// records at once (raftmq's SDK acknowledges a batch in one callback): the
// harness hands it the producer's accounting, so those producers report
// through onAcks, or onAck per record. produceAll prefers it to
// NewProducer.
type batchAckTarget interface {
	newProducerWithAcks(ctx context.Context, id int, ps *producerState) (Producer, error)
}

// clockedProducer is a Producer that takes the harness's clock reading of
// the send with each record (Send's caller reads the clock per record
// anyway), so the record's timestamp costs its SDK no clock read of its
// own. now is a reading of the producer's clock (producerState.clock).
type clockedProducer interface {
	sendAt(partition int, payload []byte, now int64) error
}

// produce publishes this producer's share of the workload starting at
// startNanos, then flushes.
func (ps *producerState) produce(ctx context.Context, producer Producer, startNanos int64) error {
	w := ps.workload
	limit := int64(math.MaxInt64)
	if w.Count > 0 {
		limit = w.producerCount(ps.id)
	}
	deadline := int64(math.MaxInt64)
	if w.Duration > 0 {
		deadline = startNanos + int64(w.Duration)
	}
	clocked, _ := producer.(clockedProducer)
	var interval float64 // nanoseconds between this producer's records
	if w.Rate > 0 {
		interval = float64(time.Second) * float64(w.Producers) / w.Rate
	}
	for sequence := int64(0); sequence < limit; sequence++ {
		intended := int64(0)
		if interval > 0 {
			intended = startNanos + int64(float64(sequence)*interval)
			// At a fixed rate the schedule ends the run: every record
			// due before the deadline is sent, however late a stall
			// (a full window) made it, and its latency counts from its
			// intended time; stopping at the wall clock would omit
			// exactly the records the stall held back.
			if intended >= deadline {
				break
			}
			if wait := intended - ps.clock.now(); wait > 0 {
				if err := sleepContext(ctx, time.Duration(wait)); err != nil {
					return err
				}
			}
		}
		buffer, err := ps.takeBuffer(ctx)
		if err != nil {
			return err
		}
		// One clock read per record: for an unpaced record it checks the
		// deadline after any wait for the window and dates the record.
		now := ps.clock.now()
		if interval == 0 {
			if now >= deadline {
				ps.putBuffer(buffer)
				break
			}
			intended = now
		}
		writePayloadHeader(buffer, recordID(ps.id, uint64(sequence)), intended)
		partition := ps.partitionOf(uint64(sequence))
		ps.sentByPartition[partition]++
		ps.sent.Store(sequence + 1)
		if clocked != nil {
			err = clocked.sendAt(partition, buffer, now)
		} else {
			err = producer.Send(partition, buffer)
		}
		if err != nil {
			ps.mu.Lock()
			ps.ackErrors++
			if ps.firstErr == nil {
				ps.firstErr = err
			}
			ps.putBufferLocked(buffer)
			ps.mu.Unlock()
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return producer.Flush(ctx)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readerState is one partition reader's accounting, owned by its goroutine
// except the atomics.
type readerState struct {
	partition     int
	clock         clock
	ledger        *consumedLedger
	latency       *hdrhistogram.Histogram // nil: no latency (replay)
	consumed      atomic.Int64            // distinct records delivered
	lastNanos     atomic.Int64
	expected      atomic.Int64 // stop once consumed reaches it
	progress      *atomic.Int64
	pendingReport int64
}

func newReaderState(w Workload, partition int, c clock, withLatency bool, progress *atomic.Int64) *readerState {
	rs := &readerState{partition: partition, clock: c, ledger: newConsumedLedger(w.Producers), progress: progress}
	if withLatency {
		rs.latency = newLatencyHistogram()
	}
	rs.expected.Store(math.MaxInt64)
	return rs
}

// deliver is the Reader callback. Once it knows how many records to
// expect, a replay (no latency) reads the clock only every reportEvery
// records and at the last expected one, not per record: on a VM a clock
// read costs about as much as decoding a record.
func (rs *readerState) deliver(payload []byte) bool {
	id, intended, ok := readPayloadHeader(payload)
	if !ok {
		rs.ledger.foreign++
		return true
	}
	if !rs.ledger.add(id) {
		return true
	}
	n := rs.consumed.Add(1)
	rs.pendingReport++
	expected := rs.expected.Load()
	last := n >= expected
	// Until setExpected runs, any delivery may turn out to be the last.
	if rs.latency != nil || expected == math.MaxInt64 || last || rs.pendingReport == reportEvery {
		now := rs.clock.now()
		if rs.latency != nil {
			recordLatency(rs.latency, time.Duration(now-intended))
		}
		rs.lastNanos.Store(now)
	}
	if rs.pendingReport == reportEvery {
		rs.progress.Add(rs.pendingReport)
		rs.pendingReport = 0
	}
	return !last
}

// reportEvery is how many deliveries a reader counts before it adds them
// to the progress counter (and, in a replay, reads the clock).
const reportEvery = 256

func (rs *readerState) done() bool { return rs.consumed.Load() >= rs.expected.Load() }

// runOne runs workload w against target with one consumer kind ("" for a
// produce run) and returns the measured result.
func runOne(ctx context.Context, target Target, w Workload, consumerKind string, progress Progress) (Result, error) {
	if err := w.Validate(); err != nil {
		return Result{}, err
	}
	if err := warmUp(ctx, target, w); err != nil {
		return Result{}, fmt.Errorf("bench: warm up %s: %w", target.Info().System, err)
	}
	if err := target.Prepare(ctx, w); err != nil {
		return Result{}, fmt.Errorf("bench: prepare %s: %w", target.Info().System, err)
	}
	info := target.Info()
	label := info.System + " " + info.Setting + " " + string(w.Kind)
	if consumerKind != "" {
		label += " " + consumerKind
	}
	r := &run{ctx: ctx, target: target, workload: w, clock: newClock(), progress: progress, label: label}
	result, err := r.execute(consumerKind)
	result.System, result.Setting, result.Durability = info.System, info.Setting, info.Durability
	result.Consumer = consumerKind
	return result, err
}

// warmUp publishes w.Warmup records to target, unmeasured, on partitions
// of their own: as fast as the automatic window allows, with w's producers,
// record size, batching, compression and acks. The measured run's Prepare
// drops those partitions. Every record must be acknowledged: a target
// that fails its warm-up would fail the run.
func warmUp(ctx context.Context, target Target, w Workload) error {
	if w.Warmup == 0 {
		return nil
	}
	wu := w
	wu.Kind, wu.Count, wu.Duration, wu.Rate, wu.Window = KindProduce, max(w.Warmup, int64(w.Producers)), 0, 0, 0
	if err := target.Prepare(ctx, wu); err != nil {
		return err
	}
	r := &run{ctx: ctx, target: target, workload: wu, clock: newClock(), progress: &NoProgress{}}
	if _, err := r.produceAll(new(atomic.Int64)); err != nil {
		return err
	}
	return r.check(false).Err()
}

type run struct {
	ctx       context.Context
	target    Target
	workload  Workload
	clock     clock
	progress  Progress
	label     string
	producers []*producerState
	readers   []*readerState
	// producerErr is the error of the produce phase of an e2e run.
	producerErr error
}

func (r *run) execute(consumerKind string) (Result, error) {
	w := r.workload
	result := Result{Kind: w.Kind, RecordSize: w.RecordSize, CoordinatedOmissionCorrected: w.Rate > 0}
	total := w.Count
	switch w.Kind {
	case KindProduce:
		result.LatencyMeasures = "publish to acknowledgement"
		r.progress.Begin(r.label, total)
		startNanos, err := r.produceAll(r.progress.Counter())
		r.progress.End()
		if err != nil {
			return result, err
		}
		r.fillProduceResult(&result, startNanos)
	case KindConsume:
		r.progress.Begin(r.label+" (fill)", total)
		if _, err := r.produceAll(r.progress.Counter()); err != nil {
			r.progress.End()
			return result, fmt.Errorf("bench: fill: %w", err)
		}
		r.progress.End()
		r.progress.Begin(r.label, total)
		startNanos := r.clock.now()
		err := r.consumeAll(consumerKind, false, func() { r.setExpected() })
		r.progress.End()
		if err != nil {
			return result, err
		}
		r.fillConsumeResult(&result, startNanos)
	case KindE2E:
		result.LatencyMeasures = "publish to delivery"
		r.progress.Begin(r.label, total)
		var startNanos int64
		err := r.consumeAll(consumerKind, true, func() {
			var err error
			startNanos, err = r.produceAll(new(atomic.Int64))
			if err != nil {
				r.producerErr = err
			}
			r.setExpected()
		})
		r.progress.End()
		if err == nil {
			err = r.producerErr
		}
		if err != nil {
			return result, err
		}
		r.fillConsumeResult(&result, startNanos)
	}
	result.Check = r.check(w.Kind != KindProduce)
	return result, nil
}

// produceAll runs every producer to completion; acks count into progress.
// It returns the clock reading at which production started.
func (r *run) produceAll(progress *atomic.Int64) (int64, error) {
	w := r.workload
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	r.producers = make([]*producerState, w.Producers)
	clients := make([]Producer, w.Producers)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for p := range w.Producers {
		ps := newProducerState(w, p, r.clock, progress)
		r.producers[p] = ps
		var client Producer
		var err error
		if t, ok := r.target.(batchAckTarget); ok {
			client, err = t.newProducerWithAcks(ctx, p, ps)
		} else {
			client, err = r.target.NewProducer(ctx, p, ps.onAck)
		}
		if err != nil {
			return 0, fmt.Errorf("bench: producer %d: %w", p, err)
		}
		clients[p] = client
	}
	startNanos := r.clock.now()
	errs := make([]error, w.Producers)
	var wg sync.WaitGroup
	for p := range w.Producers {
		wg.Go(func() {
			if errs[p] = r.producers[p].produce(ctx, clients[p], startNanos); errs[p] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return startNanos, errors.Join(errs...)
}

// setExpected tells every reader how many distinct records its partition
// holds: the acknowledged ones (a failed publish may still have been
// stored, so readers stop at "at least").
func (r *run) setExpected() {
	byPartition := make([]int64, r.workload.Partitions)
	for _, ps := range r.producers {
		ps.mu.Lock()
		for q, n := range ps.ackedByPartition {
			byPartition[q] += n
		}
		ps.mu.Unlock()
	}
	for _, rs := range r.readers {
		rs.expected.Store(byPartition[rs.partition])
	}
}

// consumeAll starts one reader per partition, runs during (which produces
// and/or calls setExpected), then waits until every reader has its expected
// records, or DrainTimeout passes after during returned.
func (r *run) consumeAll(kind string, withLatency bool, during func()) error {
	w := r.workload
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	r.readers = make([]*readerState, w.Partitions)
	clients := make([]Reader, w.Partitions)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	for q := range w.Partitions {
		r.readers[q] = newReaderState(w, q, r.clock, withLatency, r.progress.Counter())
		client, err := r.target.NewReader(ctx, kind, q%w.Consumers, q)
		if err != nil {
			return fmt.Errorf("bench: reader of partition %d: %w", q, err)
		}
		clients[q] = client
	}
	errs := make([]error, w.Partitions)
	finished := make(chan struct{})
	var wg sync.WaitGroup
	for q := range w.Partitions {
		wg.Go(func() {
			errs[q] = clients[q].Read(ctx, r.readers[q].deliver)
		})
	}
	go func() { wg.Wait(); close(finished) }()
	during()
	r.waitReaders(ctx, finished)
	cancel()
	<-finished
	for _, rs := range r.readers {
		rs.progress.Add(rs.pendingReport)
		rs.pendingReport = 0
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: read: %w", err)
	}
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	return nil
}

// waitReaders returns when every reader is done, all readers returned, the
// drain timeout passed or ctx ended.
func (r *run) waitReaders(ctx context.Context, finished <-chan struct{}) {
	drain := time.NewTimer(r.workload.DrainTimeout)
	defer drain.Stop()
	poll := time.NewTicker(2 * time.Millisecond)
	defer poll.Stop()
	for {
		allDone := true
		for _, rs := range r.readers {
			allDone = allDone && rs.done()
		}
		if allDone {
			return
		}
		select {
		case <-poll.C:
		case <-finished:
			return
		case <-drain.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (r *run) fillProduceResult(result *Result, startNanos int64) {
	merged := newLatencyHistogram()
	var acked, last int64
	for _, ps := range r.producers {
		ps.mu.Lock()
		merged.Merge(ps.latency)
		acked += ps.acked.count
		last = max(last, ps.lastAckNanos)
		ps.mu.Unlock()
	}
	result.setThroughput(acked, time.Duration(last-startNanos))
	result.Latency = summarizeLatency(merged)
}

func (r *run) fillConsumeResult(result *Result, startNanos int64) {
	merged := newLatencyHistogram()
	var consumed, last int64
	for _, rs := range r.readers {
		if rs.latency != nil {
			merged.Merge(rs.latency)
		}
		consumed += rs.consumed.Load()
		last = max(last, rs.lastNanos.Load())
	}
	result.setThroughput(consumed, time.Duration(last-startNanos))
	if result.LatencyMeasures != "" {
		result.Latency = summarizeLatency(merged)
	}
}

// check reconciles acknowledgements and deliveries.
func (r *run) check(consumed bool) Check {
	var c Check
	for _, ps := range r.producers {
		ps.mu.Lock()
		c.Sent += ps.sent.Load()
		c.Acked += ps.acked.count
		c.AckErrors += ps.ackErrors
		c.AckDuplicates += ps.ackDuplicates
		c.AckForeign += ps.ackForeign
		if ps.firstErr != nil && c.FirstError == "" {
			c.FirstError = ps.firstErr.Error()
		}
		ps.mu.Unlock()
	}
	// AckErrors counts failures, not records: the sum passes Sent only
	// if a record had two outcomes, itself an error reported; a
	// shortfall is outcomes lost.
	c.Unacknowledged = max(0, c.Sent-c.Acked-c.AckErrors)
	if consumed {
		ledgers := make([]*consumedLedger, len(r.readers))
		for i, rs := range r.readers {
			ledgers[i] = rs.ledger
		}
		reconcile(&c, r.producers, ledgers)
	}
	return c
}
