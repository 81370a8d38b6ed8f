package clients

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/raftmq/raftmq/protocol"
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
// partition's epoch is bumped so the next batch starts at sequence 0. The
// batches before it reach their own outcome first (their retries keep the
// old epoch); no new batch is sent until they have it.
//
// A partition keeps state for a bounded number of producer ids and forgets
// the least recently appending ones. A batch past sequence 0 of a producer
// it forgot gets unknown_producer (retriable; nothing was written). When
// nothing of the producer on the partition has an unknown outcome, the
// producer starts a new epoch and resends the window's batches renumbered
// from sequence 0 (Kafka's KIP-360); otherwise it resends them in order,
// as after out_of_order_sequence, until they get an answer or time out.

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
// any more, so they fail too, and the partition owes a new epoch
// (epochSettled). The batches before it keep their own outcome: their
// attempts, and retries, carry the epoch they were stamped with.
func (pp *partitionProducer) failedInSequence(failed *pendingBatch) {
	if !failed.sequenced {
		return
	}
	after := false
	for _, batch := range pp.window {
		if batch == failed {
			after = true
			continue
		}
		if after && batch.sequenced && batch.state != batchDone {
			batch.state = batchDone
			batch.err = fmt.Errorf("an earlier batch of the partition failed, so this one was abandoned (it may or may not have been written): %w", failed.err)
		}
	}
	pp.forgotten = false
	pp.epochBumpDue = true
}

// epochSettled reports whether a new batch may be stamped. After a batch
// failed for good (failedInSequence) it bumps the epoch, but only once
// every earlier batch of the window has its outcome: a batch still in
// flight or waiting for a retry would be fenced under the new epoch (as
// Kafka drains in-flight requests before it bumps the epoch). Until then
// no new batch is sent.
func (pp *partitionProducer) epochSettled() bool {
	if !pp.epochBumpDue {
		return true
	}
	for _, batch := range pp.window {
		if batch.sequenced && batch.state != batchDone {
			return false
		}
	}
	pp.epochBumpDue = false
	pp.sequence.bumpEpoch()
	return true
}

// refusedUnwritten reports whether an attempt's error proves that its batch
// was not written: the partition's sequence check refused it, or no broker
// received it.
func refusedUnwritten(err error) bool {
	var apiError *protocol.Error
	if errors.As(err, &apiError) {
		return apiError.Code == protocol.CodeOutOfOrderSequence || apiError.Code == protocol.CodeUnknownProducer
	}
	return errors.Is(err, ErrNoBrokers)
}

// noteAttemptError records what a failed attempt of a sequenced batch
// says: whether the batch may have been written, and whether the partition
// forgot the producer while the batch, the window's first, has no attempt
// of unknown outcome.
func (pp *partitionProducer) noteAttemptError(batch *pendingBatch, err error) {
	if !batch.sequenced {
		return
	}
	if !refusedUnwritten(err) {
		batch.maybeWritten = true
		return
	}
	if errors.Is(err, protocol.CodeUnknownProducer) && len(pp.window) > 0 && pp.window[0] == batch && !batch.maybeWritten {
		pp.forgotten = true
	}
}

// restartSequenceIfSafe runs before the window is resent. When the
// partition forgot the producer (noteAttemptError) and no batch of the
// producer on the partition has an unknown outcome, it starts a new epoch
// and renumbers the window's batches from sequence 0, so their resend is
// taken instead of being refused until the delivery timeout. Safe then:
// the batches before the window were acknowledged; the first batch of the
// window was refused unwritten on every attempt; a later one cannot have
// been written without it (a partition takes a producer's sequences in
// order); and an attempt still on its way under the old epoch is fenced
// once the new one is known. Otherwise the window is resent unchanged.
func (pp *partitionProducer) restartSequenceIfSafe() {
	if !pp.forgotten {
		return
	}
	pp.forgotten = false
	if len(pp.window) == 0 || pp.window[0].maybeWritten {
		return
	}
	for _, batch := range pp.window {
		if !batch.sequenced || batch.state != batchRetry {
			return
		}
	}
	pp.sequence.bumpEpoch()
	for _, batch := range pp.window {
		pp.sequence.renumber(batch, len(batch.records))
		batch.maybeWritten = false // its old epoch's attempts are fenced now
	}
}

// renumber gives an encoded, unwritten batch the current epoch and the
// next sequence, and advances the sequence past it.
func (s *producerSequence) renumber(batch *pendingBatch, records int) {
	protocol.SetBatchProducer(batch.request[batch.batchStart:], s.producerID, s.epoch, s.nextSequence)
	s.nextSequence += int32(records)
}
