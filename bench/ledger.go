package bench

import (
	"errors"
	"fmt"
	mathbits "math/bits"
)

// idSet is a growable bitset of sequence numbers.
type idSet struct {
	words []uint64
	count int64
}

// add inserts sequence and reports whether it was already present.
func (s *idSet) add(sequence uint64) (duplicate bool) {
	word := sequence / 64
	if word >= uint64(len(s.words)) {
		grown := make([]uint64, max(word+1, uint64(2*len(s.words))))
		copy(grown, s.words)
		s.words = grown
	}
	bit := uint64(1) << (sequence % 64)
	if s.words[word]&bit != 0 {
		return true
	}
	s.words[word] |= bit
	s.count++
	return false
}

func (s *idSet) has(sequence uint64) bool {
	word := sequence / 64
	return word < uint64(len(s.words)) && s.words[word]&(1<<(sequence%64)) != 0
}

// forEach calls fn for every member in increasing order.
func (s *idSet) forEach(fn func(sequence uint64)) {
	for w, bits := range s.words {
		for bits != 0 {
			bit := uint64(mathbits.TrailingZeros64(bits))
			fn(uint64(w)*64 + bit)
			bits &= bits - 1
		}
	}
}

// consumedLedger records what one reader delivered; it is owned by the
// reader's goroutine.
type consumedLedger struct {
	byProducer []idSet // indexed by producer id
	duplicates int64
	foreign    int64 // not a record of this run (bad header or producer id)
}

func newConsumedLedger(producers int) *consumedLedger {
	return &consumedLedger{byProducer: make([]idSet, producers)}
}

// add records a delivered record id; it reports whether the record was new.
func (l *consumedLedger) add(id uint64) bool {
	producer, sequence := splitRecordID(id)
	if producer >= len(l.byProducer) {
		l.foreign++
		return false
	}
	if l.byProducer[producer].add(sequence) {
		l.duplicates++
		return false
	}
	return true
}

// Check is the accounting of one run: what was published, acknowledged and
// consumed. A correct run has every record sent acknowledged, no
// duplicates, no foreign or unacknowledged deliveries and, when it
// consumed, nothing missing.
type Check struct {
	// Sent is how many records the producers handed to the client.
	Sent int64 `json:"sent"`
	// Acked counts distinct records acknowledged as stored.
	Acked int64 `json:"acked"`
	// AckErrors counts records whose publish failed.
	AckErrors int64 `json:"ack_errors"`
	// Unacknowledged counts records sent whose outcome never came: Sent
	// less Acked and AckErrors (the target lost their acknowledgement).
	Unacknowledged int64 `json:"unacknowledged"`
	// AckDuplicates counts acknowledgements for a record already acknowledged.
	AckDuplicates int64 `json:"ack_duplicates"`
	// AckForeign counts acknowledgements for records never sent.
	AckForeign int64 `json:"ack_foreign"`
	// Consumed counts distinct records delivered to consumers.
	Consumed int64 `json:"consumed"`
	// ConsumeDuplicates counts deliveries of a record already delivered.
	ConsumeDuplicates int64 `json:"consume_duplicates"`
	// ConsumedForeign counts deliveries that are not a record of this run
	// (never sent, or an unreadable payload).
	ConsumedForeign int64 `json:"consumed_foreign"`
	// ConsumedUnacked counts delivered records that were sent but never
	// acknowledged (their publish failed or timed out).
	ConsumedUnacked int64 `json:"consumed_unacked"`
	// Missing counts acknowledged records no consumer delivered (only when
	// the run consumed).
	Missing int64 `json:"missing"`
	// FirstError is the first publish error, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Err describes every anomaly, or returns nil.
func (c Check) Err() error {
	var errs []error
	add := func(n int64, what string) {
		if n != 0 {
			errs = append(errs, fmt.Errorf("bench: %d %s", n, what))
		}
	}
	if c.AckErrors != 0 {
		errs = append(errs, fmt.Errorf("bench: %d publishes failed, the first with: %s", c.AckErrors, c.FirstError))
	}
	add(c.Unacknowledged, "records sent and never acknowledged (no outcome)")
	add(c.AckDuplicates, "duplicate acknowledgements")
	add(c.AckForeign, "acknowledgements for records never sent")
	add(c.ConsumeDuplicates, "duplicate deliveries")
	add(c.ConsumedForeign, "deliveries of records never sent")
	add(c.ConsumedUnacked, "deliveries of records never acknowledged")
	add(c.Missing, "acknowledged records never delivered")
	return errors.Join(errs...)
}

// reconcile fills the consume side of check from the producers' ledgers
// and the readers' ledgers.
func reconcile(check *Check, producers []*producerState, readers []*consumedLedger) {
	for _, r := range readers {
		check.ConsumeDuplicates += r.duplicates
		check.ConsumedForeign += r.foreign
	}
	for p, producer := range producers {
		var merged idSet
		for _, r := range readers {
			r.byProducer[p].forEach(func(sequence uint64) {
				if merged.add(sequence) {
					check.ConsumeDuplicates++ // the same record from two partitions
				}
			})
		}
		check.Consumed += merged.count
		sent := uint64(producer.sent.Load())
		merged.forEach(func(sequence uint64) {
			switch {
			case sequence >= sent:
				check.ConsumedForeign++
				check.Consumed--
			case !producer.acked.has(sequence):
				check.ConsumedUnacked++
			}
		})
		producer.acked.forEach(func(sequence uint64) {
			if !merged.has(sequence) {
				check.Missing++
			}
		})
	}
}
