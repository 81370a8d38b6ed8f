package bench

import (
	"errors"
	"testing"
)

func TestIDSetAddHasForEach(t *testing.T) {
	var s idSet
	for _, seq := range []uint64{0, 63, 64, 1000, 5} {
		if s.add(seq) {
			t.Fatalf("add(%d) reported a duplicate", seq)
		}
	}
	if !s.add(64) {
		t.Fatal("second add(64) not reported as duplicate")
	}
	if s.count != 5 || !s.has(1000) || s.has(999) || s.has(1_000_000) {
		t.Fatalf("set state wrong: count %d", s.count)
	}
	var got []uint64
	s.forEach(func(seq uint64) { got = append(got, seq) })
	want := []uint64{0, 5, 63, 64, 1000}
	if len(got) != len(want) {
		t.Fatalf("forEach gave %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("forEach gave %v, want %v", got, want)
		}
	}
}

func TestReconcileFindsEveryAnomaly(t *testing.T) {
	w := DefaultWorkload(KindE2E)
	w.Producers = 1
	ps := newProducerState(w, 0, newClock(), new(nopCounter).counter())
	ps.sent.Store(4) // records 0..3 sent
	for _, seq := range []uint64{0, 1, 2} {
		ps.acked.add(seq)
	}
	reader := newConsumedLedger(1)
	reader.add(recordID(0, 0))
	reader.add(recordID(0, 0)) // duplicate delivery
	reader.add(recordID(0, 3)) // sent, never acknowledged
	reader.add(recordID(0, 9)) // never sent
	reader.add(recordID(7, 0)) // unknown producer
	var c Check
	reconcile(&c, []*producerState{ps}, []*consumedLedger{reader})
	want := Check{Consumed: 2, ConsumeDuplicates: 1, ConsumedForeign: 2, ConsumedUnacked: 1, Missing: 2}
	if c != want {
		t.Fatalf("check %+v, want %+v", c, want)
	}
	if c.Err() == nil {
		t.Fatal("Err() is nil for a check with anomalies")
	}
	if (Check{Sent: 3, Acked: 3, Consumed: 3}).Err() != nil {
		t.Fatal("Err() reports a clean check")
	}
}

func TestProducerOnAckCountsOnce(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	w.Window = 4
	progress := new(nopCounter).counter()
	ps := newProducerState(w, 0, newClock(), progress)
	buffer := <-ps.free
	writePayloadHeader(buffer, recordID(0, 0), 0)
	ps.sent.Store(1)
	ps.onAck(buffer, nil)
	ps.onAck(buffer, nil) // a second acknowledgement for the same record
	other := make([]byte, w.RecordSize)
	writePayloadHeader(other, recordID(0, 5), 0) // never sent
	ps.onAck(other, nil)
	failed := make([]byte, w.RecordSize)
	writePayloadHeader(failed, recordID(0, 0), 0)
	ps.onAck(failed, errors.New("boom"))
	if ps.acked.count != 1 || ps.ackDuplicates != 1 || ps.ackForeign != 1 || ps.ackErrors != 1 {
		t.Fatalf("acked %d duplicates %d foreign %d errors %d", ps.acked.count, ps.ackDuplicates, ps.ackForeign, ps.ackErrors)
	}
	if progress.Load() != 4 {
		t.Fatalf("progress %d, want 4", progress.Load())
	}
}
