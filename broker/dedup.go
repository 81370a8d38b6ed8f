package broker

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
)

// Idempotent producers (see docs/adr/0003-idempotent-producer.md).
//
// A batch whose header carries a producer id > 0 comes from an idempotent
// producer: its ProducerEpoch and BaseSequence number its records per
// partition (sequence of the first record; the batch covers BaseSequence ..
// BaseSequence+RecordCount-1). Two layers keep retries from writing a batch
// twice:
//
//   - The replicated state (producerState.applied): per producer id, the
//     epoch, the last sequence and the last producerWindow batches with their
//     base offsets. It changes only when a record batch entry is applied, so
//     every replica holds the same state at the same applied index; it lives
//     in the state database beside the consumer state (same batch, same
//     applied index, replayed the same way at restart) and in the
//     consumer-state snapshot.
//   - The leader's in-flight table (producerState.inflight): batches this
//     leader proposed in its current term and that are not applied yet
//     (apply removes a producer's batches once they are).
//
// A leader admits idempotent batches only once it applied an entry of its
// own term (its election no-op): every entry of earlier terms is then in the
// applied state, and every later one in the in-flight table, so the union is
// everything the log holds. Until then it answers not_ready.

// producerWindow is how many recent batches a partition remembers per
// producer. A producer keeps at most this many batches unacknowledged
// (the SDK caps WithMaxInFlight at it), so a retry always finds its original.
const producerWindow = 5

// maxProducersPerPartition is how many producer ids a partition remembers
// before it forgets the least recently appending ones (a forgotten
// producer must start again at sequence 0, a new epoch), down to 90% of
// it. It forgets only producers idle for defaultProducerKeepRecent: a
// producer forgotten sooner could have the retry of its batch at sequence
// 0 (every producer's first batch, and every new epoch's) taken as a new
// batch and written twice. Beyond maxProducersHardCap it forgets the least
// recently appending ones whatever their age, down to 90% of that.
const (
	maxProducersPerPartition = 10000
	maxProducersHardCap      = 10 * maxProducersPerPartition
	// evictEvery: the partition looks for producers to forget once it
	// holds more than maxProducersPerPartition, and again every
	// evictEvery new producer ids while it does (a pass sorts them all).
	evictEvery = maxProducersPerPartition / 10
)

// defaultProducerKeepRecent is how long after its last append a producer
// is remembered whatever the count: well past the SDK's default delivery
// timeout (1 minute), the longest a producer retries a batch.
const defaultProducerKeepRecent = 15 * time.Minute

// keyProducer: 'p' + raft group id (8 bytes BE) + producer id (8 bytes BE)
// -> producerRecord (encode).
const keyProducer = 'p'

// producerBatch is one remembered batch of a producer.
type producerBatch struct {
	FirstSequence int32  `json:"first_sequence"`
	LastSequence  int32  `json:"last_sequence"`
	BaseOffset    uint64 `json:"base_offset"`
	AppendTime    int64  `json:"append_time"` // unix ms, as the leader stamped it
}

// producerRecord is the applied state of one producer id on one partition.
type producerRecord struct {
	Epoch        int16           `json:"epoch"`
	LastSequence int32           `json:"last_sequence"`
	LastAppend   int64           `json:"last_append"` // append time of the last batch, for eviction
	Batches      []producerBatch `json:"batches"`     // oldest first, at most producerWindow
}

func (r *producerRecord) encode() []byte {
	out := make([]byte, 0, 2+4+8+1+len(r.Batches)*24)
	out = binary.LittleEndian.AppendUint16(out, uint16(r.Epoch))
	out = binary.LittleEndian.AppendUint32(out, uint32(r.LastSequence))
	out = binary.LittleEndian.AppendUint64(out, uint64(r.LastAppend))
	out = append(out, byte(len(r.Batches)))
	for _, b := range r.Batches {
		out = binary.LittleEndian.AppendUint32(out, uint32(b.FirstSequence))
		out = binary.LittleEndian.AppendUint32(out, uint32(b.LastSequence))
		out = binary.LittleEndian.AppendUint64(out, b.BaseOffset)
		out = binary.LittleEndian.AppendUint64(out, uint64(b.AppendTime))
	}
	return out
}

func decodeProducerRecord(b []byte) (producerRecord, error) {
	var r producerRecord
	if len(b) < 15 || len(b) != 15+int(b[14])*24 {
		return r, fmt.Errorf("broker: producer record of %d bytes (corrupt state database)", len(b))
	}
	r.Epoch = int16(binary.LittleEndian.Uint16(b))
	r.LastSequence = int32(binary.LittleEndian.Uint32(b[2:]))
	r.LastAppend = int64(binary.LittleEndian.Uint64(b[6:]))
	rest := b[15:]
	for range int(b[14]) {
		r.Batches = append(r.Batches, producerBatch{
			FirstSequence: int32(binary.LittleEndian.Uint32(rest)),
			LastSequence:  int32(binary.LittleEndian.Uint32(rest[4:])),
			BaseOffset:    binary.LittleEndian.Uint64(rest[8:]),
			AppendTime:    int64(binary.LittleEndian.Uint64(rest[16:])),
		})
		rest = rest[24:]
	}
	return r, nil
}

func producerKey(raftGroup uint64, producerID int64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(keyProducer, raftGroup), uint64(producerID))
}

// proposal is the part of *raft.Proposal the producer state uses.
type proposal interface {
	Done() <-chan struct{}
	Wait(ctx context.Context) (index, term uint64, err error)
}

var _ proposal = (*raft.Proposal)(nil)

// inflightBatch is a batch the leader proposed in its current term.
type inflightBatch struct {
	epoch         int16
	firstSequence int32
	lastSequence  int32
	appendTime    int64
	proposal      proposal
}

// failed reports whether the proposal resolved with an error (its entry
// is not in this leader's log, or will be overwritten).
func (b *inflightBatch) failed() bool {
	select {
	case <-b.proposal.Done():
		_, _, err := b.proposal.Wait(context.Background())
		return err != nil
	default:
		return false
	}
}

// producerState is one partition replica's idempotent-producer state.
// apply runs on the partition's apply goroutine (under consumerState.mu);
// admit runs on produce handlers. mu guards everything.
type producerState struct {
	store     *stateStore
	raftGroup uint64
	log       *segmentlog.Log // base offsets of applied batches; nil in unit tests

	// keepRecentMs and hardCap are defaultProducerKeepRecent (in ms) and
	// maxProducersHardCap but in tests; every replica of a partition must
	// agree on them, as eviction is replicated state.
	keepRecentMs int64
	hardCap      int

	mu           sync.Mutex
	applied      map[int64]*producerRecord
	appliedTerm  uint64 // term of the last applied entry
	inflightTerm uint64 // the leader term the in-flight table belongs to
	inflight     map[int64][]inflightBatch
}

func newProducerState(store *stateStore, raftGroup uint64, log *segmentlog.Log) *producerState {
	return &producerState{store: store, raftGroup: raftGroup, log: log,
		keepRecentMs: defaultProducerKeepRecent.Milliseconds(), hardCap: maxProducersHardCap,
		applied: map[int64]*producerRecord{}, inflight: map[int64][]inflightBatch{}}
}

// configureProducerState applies the broker's test settings to a
// partition's producer state.
func (b *Broker) configureProducerState(p *producerState) {
	if b.cfg.producerKeepRecent > 0 {
		p.keepRecentMs = b.cfg.producerKeepRecent.Milliseconds()
	}
}

// loadProducerState reads a partition's producer state from the database.
func loadProducerState(store *stateStore, raftGroup uint64, log *segmentlog.Log) (*producerState, error) {
	p := newProducerState(store, raftGroup, log)
	prefix := groupKey(keyProducer, raftGroup)
	iter, err := store.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: groupKey(keyProducer, raftGroup+1)})
	if err != nil {
		return nil, err
	}
	for iter.First(); iter.Valid(); iter.Next() {
		rec, err := decodeProducerRecord(iter.Value())
		if err != nil || len(iter.Key()) != len(prefix)+8 {
			iter.Close()
			return nil, fmt.Errorf("broker: load producer state of group %d: %v", raftGroup, err)
		}
		p.applied[int64(binary.BigEndian.Uint64(iter.Key()[len(prefix):]))] = &rec
	}
	if err := iter.Error(); err != nil {
		iter.Close()
		return nil, err
	}
	return p, iter.Close()
}

// forgetProducerState deletes a partition's producer state.
func (s *stateStore) forgetProducerState(b *pebble.Batch, raftGroup uint64) {
	_ = b.DeleteRange(groupKey(keyProducer, raftGroup), groupKey(keyProducer, raftGroup+1), nil)
}

// appliedTermAtLeast reports whether the replica applied an entry of term
// or a later one.
func (p *producerState) appliedTermAtLeast(term uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.appliedTerm >= term
}

// apply updates the state with one applied entry, writing changed records
// into batch. It is deterministic: the same entries give the same state on
// every replica. It reports whether batch got writes.
func (p *producerState) apply(batch *pebble.Batch, e *protocol.Entry) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.appliedTerm = max(p.appliedTerm, e.Term)
	if e.Term > p.inflightTerm && len(p.inflight) > 0 {
		// An entry of a later leader: the log holds no entry of the
		// in-flight table's term after it (§5.3), so what is still in the
		// table will never apply.
		clear(p.inflight)
	}
	if e.Type != protocol.EntryRecordBatch {
		return false, nil
	}
	h, err := protocol.ReadBatchHeader(e.Data)
	if err != nil || h.ProducerID <= 0 {
		return false, nil // validated before proposal; not idempotent
	}
	baseOffset := h.BaseOffset
	if p.log != nil {
		if baseOffset, err = p.log.OffsetOfIndex(e.Index); err != nil {
			return false, fmt.Errorf("broker: offset of applied entry %d: %w", e.Index, err)
		}
	}
	known := len(p.applied)
	changed := p.record(h, baseOffset)
	if _, ok := p.inflight[h.ProducerID]; ok {
		// The leader's batches of this producer are applied now (or
		// superseded): the table keeps only what is not, so producer-id
		// churn does not grow it for the whole term.
		p.pruneInflight(h.ProducerID, p.applied[h.ProducerID])
	}
	if !changed {
		return false, nil
	}
	_ = batch.Set(producerKey(p.raftGroup, h.ProducerID), p.applied[h.ProducerID].encode(), nil)
	if len(p.applied) > known {
		p.evict(batch)
	}
	return true, nil
}

// record adds an applied batch to its producer's record; false when the
// state does not change (an older epoch, or a batch already remembered:
// neither is admitted by a leader, but the log is the truth).
func (p *producerState) record(h protocol.BatchHeader, baseOffset uint64) bool {
	rec := p.applied[h.ProducerID]
	switch {
	case rec == nil || h.ProducerEpoch > rec.Epoch:
		rec = &producerRecord{Epoch: h.ProducerEpoch}
		p.applied[h.ProducerID] = rec
	case h.ProducerEpoch < rec.Epoch:
		return false
	}
	lastSequence := h.BaseSequence + int32(h.RecordCount) - 1
	for _, b := range rec.Batches {
		if b.FirstSequence == h.BaseSequence && b.LastSequence == lastSequence {
			return false
		}
	}
	rec.Batches = append(rec.Batches, producerBatch{FirstSequence: h.BaseSequence, LastSequence: lastSequence,
		BaseOffset: baseOffset, AppendTime: h.AppendTime})
	if len(rec.Batches) > producerWindow {
		rec.Batches = slices.Delete(rec.Batches, 0, len(rec.Batches)-producerWindow)
	}
	rec.LastSequence = lastSequence
	rec.LastAppend = max(rec.LastAppend, h.AppendTime)
	return true
}

// evict runs when a producer id was added. Once there are more than
// maxProducersPerPartition, and every evictEvery ids added after that, it
// forgets the least recently appending producers (ties by id) idle for
// keepRecentMs, down to 90% of maxProducersPerPartition; past hardCap, the
// least recently appending whatever their age, down to 90% of hardCap.
// Idle is measured against the newest append time the partition holds,
// not a clock, and when it runs depends only on the count: every replica
// forgets the same producers at the same entry.
func (p *producerState) evict(batch *pebble.Batch) {
	n := len(p.applied)
	if n <= maxProducersPerPartition || (n-maxProducersPerPartition-1)%evictEvery != 0 {
		return
	}
	ids := slices.Collect(maps.Keys(p.applied))
	slices.SortFunc(ids, func(a, b int64) int {
		return cmp.Or(cmp.Compare(p.applied[a].LastAppend, p.applied[b].LastAppend), cmp.Compare(a, b))
	})
	idleBefore := p.applied[ids[n-1]].LastAppend - p.keepRecentMs
	forget := 0
	for forget < n-maxProducersPerPartition*9/10 && p.applied[ids[forget]].LastAppend < idleBefore {
		forget++
	}
	if n-forget > p.hardCap {
		forget = n - p.hardCap*9/10
	}
	for _, id := range ids[:forget] {
		delete(p.applied, id)
		_ = batch.Delete(producerKey(p.raftGroup, id), nil)
	}
}

// records returns a copy of the applied state (for a snapshot).
func (p *producerState) records() map[int64]*producerRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int64]*producerRecord, len(p.applied))
	for id, rec := range p.applied {
		copied := *rec
		copied.Batches = slices.Clone(rec.Batches)
		out[id] = &copied
	}
	return out
}

// restore replaces the applied state with a snapshot's, as of an entry of
// term, writing it into batch (the caller deleted the old keys in it).
// Batches in flight belong to a leader term this replica no longer leads
// in (only a follower restores), so they are forgotten.
func (p *producerState) restore(batch *pebble.Batch, records map[int64]*producerRecord, term uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.appliedTerm = max(p.appliedTerm, term)
	clear(p.inflight)
	p.applied = make(map[int64]*producerRecord, len(records))
	for id, rec := range records {
		if rec == nil {
			continue
		}
		p.applied[id] = rec
		_ = batch.Set(producerKey(p.raftGroup, id), rec.encode(), nil)
	}
}

// admission is the outcome of admit for a batch that is not refused.
type admission struct {
	// proposal is the new entry's proposal, or with duplicate the
	// original's when that is still in flight (nil: already applied).
	proposal  proposal
	duplicate bool
	// baseOffset and appendTime answer a duplicate; appendTime also a
	// duplicate in flight.
	baseOffset uint64
	appendTime int64
}

// admit decides about an idempotent batch at the leader and, when it is
// new and next in sequence, proposes it (calling propose under the lock,
// so the check and the log order agree). status is the group's status.
func (p *producerState) admit(h protocol.BatchHeader, appendTime int64, status raft.Status, propose func() proposal) (admission, *protocol.Error) {
	if last := int64(h.BaseSequence) + int64(h.RecordCount) - 1; h.BaseSequence < 0 || last > math.MaxInt32 {
		// The sequence arithmetic below is int32: a range past 2^31-1
		// would wrap and compare as already applied. A producer starts a
		// new epoch at sequence 0 before it gets there (the SDK does).
		return admission{}, protocol.Errorf(protocol.CodeInvalidArgument,
			"producer %d epoch %d: sequences %d..%d are outside 0..%d; start a new epoch", h.ProducerID, h.ProducerEpoch,
			h.BaseSequence, last, int64(math.MaxInt32))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.appliedTerm < status.Term {
		return admission{}, protocol.Errorf(protocol.CodeNotReady,
			"new partition leader (term %d) is applying the previous terms' entries; idempotent produce resumes when done", status.Term)
	}
	if p.inflightTerm != status.Term {
		clear(p.inflight)
		p.inflightTerm = status.Term
	}
	id := h.ProducerID
	lastSequence := h.BaseSequence + int32(h.RecordCount) - 1
	applied := p.applied[id]
	inflight := p.pruneInflight(id, applied)

	var epoch int16
	var nextSequence int32
	switch {
	case len(inflight) > 0:
		last := inflight[len(inflight)-1]
		epoch, nextSequence = last.epoch, last.lastSequence+1
	case applied != nil:
		epoch, nextSequence = applied.Epoch, applied.LastSequence+1
	case h.BaseSequence > 0:
		// A producer the partition has no state for (never seen, or
		// evicted) starts at sequence 0. Told so apart from a gap, a
		// producer whose earlier batches are all acknowledged can start a
		// new epoch instead of retrying in vain (KIP-360's
		// UNKNOWN_PRODUCER_ID).
		return admission{}, protocol.Errorf(protocol.CodeUnknownProducer,
			"producer %d epoch %d: batch starts at sequence %d, but the partition has no state for the producer (it keeps the %d most recently appending); start a new epoch at sequence 0",
			id, h.ProducerEpoch, h.BaseSequence, maxProducersPerPartition)
	default:
		epoch, nextSequence = h.ProducerEpoch, 0 // unknown producer: starts at 0
	}
	switch {
	case h.ProducerEpoch < epoch:
		return admission{}, protocol.Errorf(protocol.CodeProducerFenced,
			"producer %d epoch %d is older than the partition's epoch %d for it", id, h.ProducerEpoch, epoch)
	case h.ProducerEpoch > epoch:
		nextSequence = 0 // a new epoch starts at sequence 0
	default:
		for _, b := range inflight {
			if b.epoch == h.ProducerEpoch && b.firstSequence == h.BaseSequence && b.lastSequence == lastSequence {
				return admission{proposal: b.proposal, duplicate: true, appendTime: b.appendTime}, nil
			}
		}
		if applied != nil && applied.Epoch == h.ProducerEpoch {
			for _, b := range applied.Batches {
				if b.FirstSequence == h.BaseSequence && b.LastSequence == lastSequence {
					return admission{duplicate: true, baseOffset: b.BaseOffset, appendTime: b.AppendTime}, nil
				}
			}
		}
	}
	switch {
	case h.BaseSequence > nextSequence:
		return admission{}, protocol.Errorf(protocol.CodeOutOfOrderSequence,
			"producer %d epoch %d: batch starts at sequence %d, the partition expects %d (an earlier batch has not arrived)",
			id, h.ProducerEpoch, h.BaseSequence, nextSequence)
	case h.BaseSequence < nextSequence:
		return admission{}, protocol.Errorf(protocol.CodeDuplicateSequence,
			"producer %d epoch %d: sequences %d..%d were already written, and the partition no longer remembers that batch's offset (it keeps the last %d batches per producer)",
			id, h.ProducerEpoch, h.BaseSequence, lastSequence, producerWindow)
	}
	proposal := propose()
	select {
	case <-proposal.Done():
		if _, _, err := proposal.Wait(context.Background()); err != nil {
			return admission{proposal: proposal}, nil // failed at once: nothing to remember
		}
	default:
	}
	p.inflight[id] = append(inflight, inflightBatch{epoch: h.ProducerEpoch, firstSequence: h.BaseSequence,
		lastSequence: lastSequence, appendTime: appendTime, proposal: proposal})
	return admission{proposal: proposal}, nil
}

// pruneInflight drops the in-flight batches of id that are applied (or
// superseded by a newer applied epoch) or whose proposal failed, and
// returns the rest.
func (p *producerState) pruneInflight(id int64, applied *producerRecord) []inflightBatch {
	inflight := p.inflight[id]
	kept := inflight[:0]
	for _, b := range inflight {
		if applied != nil && (applied.Epoch > b.epoch || applied.Epoch == b.epoch && b.lastSequence <= applied.LastSequence) {
			continue
		}
		if b.failed() {
			continue
		}
		kept = append(kept, b)
	}
	clear(inflight[len(kept):])
	if len(kept) == 0 {
		delete(p.inflight, id)
		return nil
	}
	p.inflight[id] = kept
	return kept
}

// producerRecords returns the producer state and the index it is current
// as of, read together (the consumer state's lock orders them with apply).
func (c *consumerState) producerRecords() (map[int64]*producerRecord, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.producers == nil {
		return nil, c.applied
	}
	return c.producers.records(), c.applied
}

// admitBatch proposes a validated batch: a batch of an idempotent producer
// goes through the partition's producer state (which may answer it as a
// duplicate or refuse it); any other batch is proposed as it is.
func (b *Broker) admitBatch(r *partitionReplica, h protocol.BatchHeader, appendTime int64, propose func() *raft.Proposal) (admission, *protocol.Error) {
	if h.ProducerID <= 0 || r.state.consumers == nil || r.state.consumers.producers == nil {
		return admission{proposal: propose()}, nil
	}
	return r.state.consumers.producers.admit(h, appendTime, r.group.Status(), func() proposal { return propose() })
}
