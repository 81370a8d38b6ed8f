package clients

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Idempotent produce (on by default; WithIdempotence).
//
// Each Producer picks a random producer id in [1, 2^63-1] (client chosen,
// so producing needs no extra round trip; a collision between two live
// producers is a 2^-63 event). Per partition it keeps an epoch (starting
// at 0) and the sequence number of the next record. A batch gets the
// producer id, the epoch and the sequence of its first record in its header
// when it is first encoded (the header CRC covers them), and the sequence
// advances by the batch's record count. Retries resend those exact bytes.
//
// The partition leader remembers, per producer id, the last sequence and
// the last 5 batches with their offsets (replicated: every replica applies
// the same state). A retry of a batch the partition already holds is
// answered with its original offset without being written again; a batch
// that starts past the next expected sequence (an earlier one has not
// arrived) gets the retriable out_of_order_sequence, and the producer
// resends its unacknowledged batches in order. So retries neither duplicate
// nor reorder records.
//
// When a batch fails for good (non-retriable error, or its delivery
// timeout) its records may or may not be in the partition, and the batches
// after it can no longer follow it in sequence: they fail as well, and the
// partition's epoch is bumped so the next batch starts at sequence 0.

// maxIdempotentInFlight is the most batches per partition an idempotent
// producer keeps unacknowledged: the brokers remember that many batches
// per producer, so every retry finds its original.
const maxIdempotentInFlight = 5

// WithIdempotence turns the idempotent producer on or off. On (the
// default), retries after leader failovers and timeouts never write a
// batch twice or out of order, and WithMaxInFlight may be at most 5. Off,
// batches carry no producer identity and delivery is at least once: a
// retried batch that was committed before is written again, and a timed-out
// batch may be retried after later ones. Default true.
func WithIdempotence(enabled bool) ProducerOption {
	return func(c *producerConfig) error {
		c.idempotenceOff = !enabled
		return nil
	}
}

// validateIdempotence checks the options that idempotence constrains.
func (c *producerConfig) validateIdempotence() error {
	if !c.idempotenceOff && c.maxInFlight > maxIdempotentInFlight {
		return fmt.Errorf("clients: max in-flight %d: an idempotent producer allows at most %d (or use WithIdempotence(false))",
			c.maxInFlight, maxIdempotentInFlight)
	}
	return nil
}

// newProducerID returns a random producer id in [1, 2^63-1].
func newProducerID() int64 { return rand.Int64N(math.MaxInt64) + 1 }

// producerSequence is one partition's idempotent identity; owned by the
// partition's run goroutine.
type producerSequence struct {
	producerID   int64 // 0: idempotence off
	epoch        int16
	nextSequence int32
}

// stamp sets the producer identity of a batch of records about to be
// encoded for the first time; commit advances the sequence once the
// encoding succeeded. A batch whose sequences would pass 2^31-1 starts a
// new epoch instead (brokers refuse a range that wraps).
func (s *producerSequence) stamp(batch *pendingBatch, records int) {
	if s.producerID == 0 {
		return
	}
	if int64(s.nextSequence)+int64(records)-1 > math.MaxInt32 {
		s.bumpEpoch()
	}
	batch.builder.SetProducer(s.producerID, s.epoch, s.nextSequence)
}

func (s *producerSequence) commit(batch *pendingBatch, records int) {
	if s.producerID == 0 {
		return
	}
	batch.sequenced = true
	s.nextSequence += int32(records)
	if s.nextSequence < 0 { // wrapped: start a new epoch
		s.bumpEpoch()
	}
}

// bumpEpoch starts a new epoch at sequence 0 (a new producer id when the
// epoch would wrap).
func (s *producerSequence) bumpEpoch() {
	s.nextSequence = 0
	if s.epoch == math.MaxInt16 {
		s.producerID, s.epoch = newProducerID(), 0
		return
	}
	s.epoch++
}

// failedInSequence handles a sequenced batch that failed for good: the
// unfinished batches after it in the window cannot follow it in sequence
// any more, so every unfinished batch of the window fails too, and the
// partition starts a new epoch.
func (pp *partitionProducer) failedInSequence(failed *pendingBatch) {
	if !failed.sequenced {
		return
	}
	for _, batch := range pp.window {
		// Earlier unfinished batches too: their retries would carry the
		// old epoch and be fenced.
		if batch != failed && batch.sequenced && batch.state != batchDone {
			batch.state = batchDone
			batch.err = fmt.Errorf("an earlier batch of the partition failed, so this one was abandoned (it may or may not have been written): %w", failed.err)
		}
	}
	pp.sequence.bumpEpoch()
}
