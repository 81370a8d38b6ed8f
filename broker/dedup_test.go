package broker

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
)

// fakeProposal is a proposal the test resolves.
type fakeProposal struct {
	done  chan struct{}
	index uint64
	err   error
}

func newFakeProposal() *fakeProposal { return &fakeProposal{done: make(chan struct{})} }

func (p *fakeProposal) Done() <-chan struct{} { return p.done }

func (p *fakeProposal) Wait(ctx context.Context) (uint64, uint64, error) {
	select {
	case <-p.done:
		return p.index, 0, p.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

func (p *fakeProposal) resolve(index uint64, err error) {
	p.index, p.err = index, err
	close(p.done)
}

// dedupHarness drives a producerState like a partition does: admit at the
// leader, then apply the admitted entries in log order.
type dedupHarness struct {
	t         *testing.T
	db        *pebble.DB
	state     *producerState
	term      uint64
	nextIndex uint64
	proposed  []protocol.Entry // admitted, not yet applied
	proposals []*fakeProposal
	// clockMs is added to the append time of new batches (their index
	// in ms), for tests that let time pass.
	clockMs int64
}

func newDedupHarness(t *testing.T) *dedupHarness {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := &dedupHarness{t: t, db: db, state: newProducerState(&stateStore{db: db}, 7, nil), nextIndex: 1}
	h.elect()
	return h
}

// elect starts a new leader term and applies its no-op.
func (h *dedupHarness) elect() {
	h.term++
	h.proposed = append(h.proposed, protocol.Entry{Index: h.nextIndex, Term: h.term, Type: protocol.EntryNoop})
	h.proposals = append(h.proposals, nil)
	h.nextIndex++
	h.applyAll()
}

func idempotentHeader(producerID int64, epoch int16, baseSequence int32, records uint32) protocol.BatchHeader {
	return protocol.BatchHeader{Magic: protocol.BatchMagic, Length: protocol.BatchHeaderSize, RecordCount: records,
		ProducerID: producerID, ProducerEpoch: epoch, BaseSequence: baseSequence}
}

// produce admits a batch; the base offset of a new batch is its index*100.
func (h *dedupHarness) produce(header protocol.BatchHeader) (admission, *protocol.Error) {
	h.t.Helper()
	var fake *fakeProposal
	appendTime := h.clockMs + int64(h.nextIndex)
	admitted, apiErr := h.state.admit(header, appendTime, raft.Status{Term: h.term, Role: raft.RoleLeader}, func() proposal {
		fake = newFakeProposal()
		return fake
	})
	if fake != nil {
		header.BaseOffset = h.nextIndex * 100
		header.AppendTime = appendTime
		data := make([]byte, protocol.BatchHeaderSize)
		protocol.PutBatchHeader(data, &header)
		h.proposed = append(h.proposed, protocol.Entry{Index: h.nextIndex, Term: h.term, Type: protocol.EntryRecordBatch, Data: data})
		h.proposals = append(h.proposals, fake)
		h.nextIndex++
	}
	return admitted, apiErr
}

// applyAll commits and applies everything proposed.
func (h *dedupHarness) applyAll() {
	h.t.Helper()
	batch := h.db.NewBatch()
	defer batch.Close()
	for i := range h.proposed {
		if _, err := h.state.apply(batch, &h.proposed[i]); err != nil {
			h.t.Fatal(err)
		}
		if h.proposals[i] != nil {
			h.proposals[i].resolve(h.proposed[i].Index, nil)
		}
	}
	if err := batch.Commit(pebble.NoSync); err != nil {
		h.t.Fatal(err)
	}
	h.proposed, h.proposals = nil, nil
}

func wantCode(t *testing.T, apiErr *protocol.Error, code protocol.ErrorCode) {
	t.Helper()
	if apiErr == nil || apiErr.Code != code {
		t.Fatalf("error = %v, want %v", apiErr, code)
	}
}

// produceNew admits a batch that must be new.
func (h *dedupHarness) produceNew(header protocol.BatchHeader) admission {
	h.t.Helper()
	admitted, apiErr := h.produce(header)
	if apiErr != nil || admitted.duplicate || admitted.proposal == nil {
		h.t.Fatalf("admission = %+v, %v; want a new proposal", admitted, apiErr)
	}
	return admitted
}

// refused returns the error of a batch that must be refused.
func (h *dedupHarness) refused(header protocol.BatchHeader) *protocol.Error {
	h.t.Helper()
	admitted, apiErr := h.produce(header)
	if apiErr == nil {
		h.t.Fatalf("admission = %+v, want an error", admitted)
	}
	return apiErr
}

func TestDedupDuplicateOfAppliedBatchAnswersOriginalOffset(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(42, 0, 0, 3))
	h.produceNew(idempotentHeader(42, 0, 3, 2))
	h.applyAll()
	admitted, apiErr := h.produce(idempotentHeader(42, 0, 0, 3))
	if apiErr != nil || !admitted.duplicate || admitted.proposal != nil || admitted.baseOffset != 200 || admitted.appendTime != 2 {
		t.Fatalf("retry of the first batch: %+v, %v; want duplicate at offset 200, append time 2", admitted, apiErr)
	}
	if len(h.proposed) != 0 {
		t.Fatalf("a duplicate was proposed: %v", h.proposed)
	}
	h.produceNew(idempotentHeader(42, 0, 5, 1))
}

func TestDedupDuplicateOfInflightBatchWaitsForOriginal(t *testing.T) {
	h := newDedupHarness(t)
	first := h.produceNew(idempotentHeader(42, 0, 0, 3))
	again, apiErr := h.produce(idempotentHeader(42, 0, 0, 3))
	if apiErr != nil || !again.duplicate || again.proposal != first.proposal {
		t.Fatalf("retry while in flight: %+v, %v; want the original proposal", again, apiErr)
	}
	if len(h.proposed) != 1 {
		t.Fatalf("proposed %d entries, want 1", len(h.proposed))
	}
	// In flight, the next expected sequence is 3.
	h.produceNew(idempotentHeader(42, 0, 3, 1))
}

func TestDedupWindowKeepsLastFiveBatches(t *testing.T) {
	h := newDedupHarness(t)
	for i := range int32(7) {
		h.produceNew(idempotentHeader(9, 0, i*2, 2))
	}
	h.applyAll()
	for i := range int32(7) {
		admitted, apiErr := h.produce(idempotentHeader(9, 0, i*2, 2))
		if i < 7-producerWindow {
			wantCode(t, apiErr, protocol.CodeDuplicateSequence)
			if apiErr.Retriable() {
				t.Fatal("duplicate_sequence is retriable")
			}
			continue
		}
		if apiErr != nil || !admitted.duplicate {
			t.Fatalf("batch %d in the window: %+v, %v; want a duplicate", i, admitted, apiErr)
		}
	}
	// A batch overlapping a remembered one without matching it.
	wantCode(t, h.refused(idempotentHeader(9, 0, 11, 2)), protocol.CodeDuplicateSequence)
}

func TestDedupGapIsRetriableOutOfOrder(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(5, 0, 0, 4))
	apiErr := h.refused(idempotentHeader(5, 0, 5, 1))
	wantCode(t, apiErr, protocol.CodeOutOfOrderSequence)
	if !apiErr.Retriable() {
		t.Fatal("out_of_order_sequence is not retriable")
	}
	wantCode(t, h.refused(idempotentHeader(5, 0, 5, 1)), protocol.CodeOutOfOrderSequence)
	h.applyAll()
	wantCode(t, h.refused(idempotentHeader(5, 0, 5, 1)), protocol.CodeOutOfOrderSequence)
	h.produceNew(idempotentHeader(5, 0, 4, 1))
	h.produceNew(idempotentHeader(5, 0, 5, 1))
}

// TestDedupUnknownProducerPastSequenceZero: a batch past sequence 0 from a
// producer id the partition has no state for, never seen or evicted, gets
// unknown_producer (retriable), so the producer can tell it from a gap and
// start a new epoch; sequence 0 of it is taken. Before, it got
// out_of_order_sequence, which the SDK retried in vain until its delivery
// timeout; within a term an evicted producer was not even noticed, the
// in-flight table still holding its applied batch.
func TestDedupUnknownProducerPastSequenceZero(t *testing.T) {
	h := newDedupHarness(t)
	apiErr := h.refused(idempotentHeader(5, 0, 4, 1))
	wantCode(t, apiErr, protocol.CodeUnknownProducer)
	if !apiErr.Retriable() {
		t.Fatal("unknown_producer is not retriable")
	}

	const evicted = 1
	h.produceNew(idempotentHeader(evicted, 0, 0, 1))
	h.applyAll()
	h.clockMs += defaultProducerKeepRecent.Milliseconds() // idle long enough to be forgotten
	for id := range int64(maxProducersPerPartition) {
		h.produceNew(idempotentHeader(1000+id, 0, 0, 1))
		h.applyAll()
	}
	if h.state.applied[evicted] != nil {
		t.Fatal("the first producer was not evicted")
	}
	wantCode(t, h.refused(idempotentHeader(evicted, 0, 1, 1)), protocol.CodeUnknownProducer)
	h.produceNew(idempotentHeader(evicted, 1, 0, 1))
	h.applyAll()
	// Known again: a gap is out of order.
	wantCode(t, h.refused(idempotentHeader(evicted, 1, 2, 1)), protocol.CodeOutOfOrderSequence)
}

// TestDedupInflightTableHoldsOnlyUnappliedBatches: once a leader's batches
// are applied, its in-flight table no longer holds their producers; and an
// entry of a later leader's term drops what the table still holds (its
// entries can no longer apply). Before, a producer's entry stayed until
// the same producer id produced again or the leader's next term: after
// 1,000 producer ids of one batch each, the table held 1,000.
func TestDedupInflightTableHoldsOnlyUnappliedBatches(t *testing.T) {
	h := newDedupHarness(t)
	for id := range int64(1000) {
		h.produceNew(idempotentHeader(100+id, 0, 0, 1))
		if id%10 == 9 {
			h.applyAll()
		}
	}
	if n := len(h.state.inflight); n != 0 {
		t.Fatalf("in-flight table holds %d producer ids after every batch applied, want 0", n)
	}
	h.produceNew(idempotentHeader(5, 0, 0, 1))
	h.produceNew(idempotentHeader(6, 0, 0, 1))
	h.applyAll()
	h.produceNew(idempotentHeader(5, 0, 1, 1)) // in flight, not applied
	if n := len(h.state.inflight); n != 1 {
		t.Fatalf("in-flight table holds %d producer ids, want 1 (the unapplied batch)", n)
	}
	// The entry is lost in a failover: a later term's no-op applies.
	h.proposed, h.proposals = nil, nil
	h.elect()
	if n := len(h.state.inflight); n != 0 {
		t.Fatalf("in-flight table holds %d producer ids after a later term's entry applied, want 0", n)
	}
	h.produceNew(idempotentHeader(5, 0, 1, 1))
}

func TestDedupEpochBump(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(5, 0, 0, 4))
	h.applyAll()
	// A new epoch must start at sequence 0.
	wantCode(t, h.refused(idempotentHeader(5, 1, 4, 1)), protocol.CodeOutOfOrderSequence)
	h.produceNew(idempotentHeader(5, 1, 0, 2))
	// The old epoch is fenced, in flight and once applied.
	wantCode(t, h.refused(idempotentHeader(5, 0, 4, 1)), protocol.CodeProducerFenced)
	h.applyAll()
	apiErr := h.refused(idempotentHeader(5, 0, 0, 4))
	wantCode(t, apiErr, protocol.CodeProducerFenced)
	if apiErr.Retriable() {
		t.Fatal("producer_fenced is retriable")
	}
	if rec := h.state.applied[5]; rec.Epoch != 1 || rec.LastSequence != 1 || len(rec.Batches) != 1 {
		t.Fatalf("state after the bump = %+v", rec)
	}
}

func TestDedupNewLeaderWaitsForItsNoop(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(5, 0, 0, 1))
	// A new term whose no-op is not applied yet: the batch above may still
	// commit, so nothing idempotent is admitted.
	h.term++
	wantCode(t, h.refused(idempotentHeader(5, 0, 0, 1)), protocol.CodeNotReady)
	h.proposed = append(h.proposed, protocol.Entry{Index: h.nextIndex, Term: h.term, Type: protocol.EntryNoop})
	h.proposals = append(h.proposals, nil)
	h.nextIndex++
	h.applyAll()
	admitted, apiErr := h.produce(idempotentHeader(5, 0, 0, 1))
	if apiErr != nil || !admitted.duplicate || admitted.baseOffset != 200 {
		t.Fatalf("retry after failover: %+v, %v; want the duplicate at offset 200", admitted, apiErr)
	}
}

func TestDedupFailedProposalIsForgotten(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(5, 0, 0, 1))
	h.proposals[0].resolve(0, errors.New("dropped"))
	h.proposed, h.proposals = nil, nil
	h.produceNew(idempotentHeader(5, 0, 0, 1))
}

func TestDedupStatePersistsAndSurvivesSnapshot(t *testing.T) {
	h := newDedupHarness(t)
	h.produceNew(idempotentHeader(5, 2, 0, 3))
	h.produceNew(idempotentHeader(6, 0, 0, 1))
	h.applyAll()
	loaded, err := loadProducerState(h.state.store, 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.applied) != 2 || loaded.applied[5].Epoch != 2 || loaded.applied[5].Batches[0].BaseOffset != 200 {
		t.Fatalf("loaded state = %v", loaded.applied)
	}
	other, err := loadProducerState(h.state.store, 8, nil)
	if err != nil || len(other.applied) != 0 {
		t.Fatalf("another partition's state = %v, %v", other.applied, err)
	}
	// A snapshot's records restore into an empty replica.
	restored := newProducerState(h.state.store, 9, nil)
	batch := h.db.NewBatch()
	restored.restore(batch, h.state.records(), 1)
	if err := batch.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	reloaded, err := loadProducerState(h.state.store, 9, nil)
	if err != nil || reloaded.applied[6] == nil || reloaded.applied[5].LastSequence != 2 {
		t.Fatalf("restored state = %v, %v", reloaded.applied, err)
	}
}

// evictAfterRecording records producers 1..n, producer id appending at
// appendTime(id), then runs an eviction pass.
func evictAfterRecording(t *testing.T, state *producerState, n int64, appendTime func(id int64) int64) {
	t.Helper()
	for id := int64(1); id <= n; id++ {
		h := idempotentHeader(id, 0, 0, 1)
		h.AppendTime = appendTime(id)
		state.record(h, uint64(id))
	}
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	batch := db.NewBatch()
	defer batch.Close()
	state.evict(batch)
}

func TestDedupEvictsLeastRecentProducers(t *testing.T) {
	state := newProducerState(nil, 1, nil)
	evictAfterRecording(t, state, maxProducersPerPartition+1, func(id int64) int64 { return id * time.Minute.Milliseconds() })
	if len(state.applied) != maxProducersPerPartition*9/10 || state.applied[1] != nil || state.applied[maxProducersPerPartition+1] == nil {
		t.Fatalf("after eviction %d producers remain (oldest kept: %v)", len(state.applied), state.applied[1] != nil)
	}
}

// TestDedupKeepsRecentProducersPastTheCount: a partition does not forget a
// producer that appended within defaultProducerKeepRecent of the newest
// append, however many producers it holds. Here a producer's first batch
// (sequence 0) is written but its reply lost; 10,000 other producers
// append before its retry arrives. Before, the partition forgot the
// producer at 10,001 and took the retry as a new batch: its records were
// written twice (found in review).
func TestDedupKeepsRecentProducersPastTheCount(t *testing.T) {
	h := newDedupHarness(t)
	const producer = 1
	h.produceNew(idempotentHeader(producer, 0, 0, 1))
	h.applyAll()
	for id := range int64(maxProducersPerPartition) {
		h.produceNew(idempotentHeader(1000+id, 0, 0, 1))
	}
	h.applyAll()
	if h.state.applied[producer] == nil {
		t.Fatalf("a producer that appended %d ms before the newest append was forgotten", maxProducersPerPartition)
	}
	admitted, apiErr := h.produce(idempotentHeader(producer, 0, 0, 1))
	if apiErr != nil || !admitted.duplicate {
		t.Fatalf("retry of the written batch at sequence 0: %+v, %v; want a duplicate", admitted, apiErr)
	}
}

// TestDedupForgetsRecentProducersPastTheHardCap: past its hard cap a
// partition forgets the least recently appending producers whatever their
// age, down to 90% of the cap, so memory stays bounded.
func TestDedupForgetsRecentProducersPastTheHardCap(t *testing.T) {
	state := newProducerState(nil, 1, nil)
	state.hardCap = maxProducersPerPartition + evictEvery // the pass at hardCap+1 producers
	n := int64(state.hardCap + 1)
	evictAfterRecording(t, state, n, func(id int64) int64 { return id }) // all within a second
	if want := state.hardCap * 9 / 10; len(state.applied) != want || state.applied[1] != nil || state.applied[n] == nil {
		t.Fatalf("after eviction past the hard cap %d producers remain, want %d (oldest kept: %v)", len(state.applied), want, state.applied[1] != nil)
	}
}

// TestIdempotentSequencesPastTheTopAreRefused: a batch whose sequences
// would pass 2^31-1 is refused with invalid_argument, before anything is
// proposed. Before, its last sequence wrapped to a negative number, the
// batch counted as already applied while it was in flight, and a retry of
// it (after a produce timeout) was proposed again: the log held its
// records twice (found in review).
func TestIdempotentSequencesPastTheTopAreRefused(t *testing.T) {
	h := newDedupHarness(t)
	const id = 42
	h.produceNew(idempotentHeader(id, 0, 0, math.MaxInt32-9))
	h.produceNew(idempotentHeader(id, 0, math.MaxInt32-9, 5)) // up to MaxInt32-5
	h.applyAll()
	proposed := len(h.proposed)
	for range 2 { // the batch, then its retry
		_, apiErr := h.produce(idempotentHeader(id, 0, math.MaxInt32-4, 10))
		if apiErr == nil || apiErr.Code != protocol.CodeInvalidArgument {
			t.Fatalf("a batch of sequences MaxInt32-4..MaxInt32+5: %v, want invalid_argument", apiErr)
		}
	}
	if len(h.proposed) != proposed {
		t.Fatalf("%d entries proposed for the refused batch", len(h.proposed)-proposed)
	}
	// The last sequences below the top are still taken.
	h.produceNew(idempotentHeader(id, 0, math.MaxInt32-4, 5))
}
