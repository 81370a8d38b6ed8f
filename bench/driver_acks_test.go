package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestProducerOnAcksCountsLikeOnAck: a batch's acknowledgements reported
// in one onAcks call are counted as onAck counts them one by one (each
// record once, duplicates, foreign and failed records apart), each
// record's latency is its own and every buffer returns to the window.
func TestProducerOnAcksCountsLikeOnAck(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	w.Window = 4
	progress := new(nopCounter).counter()
	ps := newProducerState(w, 0, newClock(), progress)
	var sent [][]byte
	for i := range 3 {
		buffer, err := ps.takeBuffer(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Intended send times a second apart: the latencies differ by a
		// second each.
		writePayloadHeader(buffer, recordID(0, uint64(i)), -int64(i)*int64(time.Second))
		sent = append(sent, buffer)
	}
	ps.sent.Store(3)
	foreign := make([]byte, w.RecordSize)
	writePayloadHeader(foreign, recordID(0, 5), 0) // never sent
	batch := [][]byte{sent[0], sent[1], sent[0], foreign}
	ps.onAcks(len(batch), func(i int) []byte { return batch[i] }, nil)
	failed := [][]byte{sent[2]}
	ps.onAcks(len(failed), func(i int) []byte { return failed[i] }, errors.New("boom"))

	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.acked.count != 2 || ps.ackDuplicates != 1 || ps.ackForeign != 1 || ps.ackErrors != 1 {
		t.Fatalf("acked %d duplicates %d foreign %d errors %d", ps.acked.count, ps.ackDuplicates, ps.ackForeign, ps.ackErrors)
	}
	if ps.ackedByPartition[ps.partitionOf(0)]+ps.ackedByPartition[ps.partitionOf(1)] < 1 {
		t.Fatal("no acknowledgement counted by partition")
	}
	if progress.Load() != 5 {
		t.Fatalf("progress %d, want 5", progress.Load())
	}
	if got := ps.latency.TotalCount(); got != 2 {
		t.Fatalf("%d latencies recorded, want 2", got)
	}
	if spread := time.Duration(ps.latency.Max()-ps.latency.Min()) * time.Microsecond; spread < 900*time.Millisecond || spread > 1100*time.Millisecond {
		t.Fatalf("latencies %v apart, want a second (each record's own)", spread)
	}
	if len(ps.free) != 4 || ps.inFlight != 0 {
		t.Fatalf("after every acknowledgement: %d free, %d in flight; want 4 and 0", len(ps.free), ps.inFlight)
	}
}
