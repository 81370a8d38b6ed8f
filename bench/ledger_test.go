package bench

import (
	"context"
	"errors"
	"strings"
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
	buffer, err := ps.takeBuffer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
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

// TestProducerWindowBuffers: the producer takes at most the window's
// buffers; with all of them in flight it waits (here: until its context
// ends) and an acknowledgement hands the acknowledged buffer back; a
// buffer beyond the window is not taken in.
func TestProducerWindowBuffers(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	w.Window = 2
	ps := newProducerState(w, 0, newClock(), new(nopCounter).counter())
	ctx := context.Background()
	var sent [][]byte
	for i := range 2 {
		buffer, err := ps.takeBuffer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		writePayloadHeader(buffer, recordID(0, uint64(i)), 0)
		sent = append(sent, buffer)
	}
	ps.sent.Store(2)
	if &sent[0][0] == &sent[1][0] {
		t.Fatal("the same buffer was taken twice")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ps.takeBuffer(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("take with the whole window in flight: %v, want context.Canceled", err)
	}
	ps.onAck(sent[1], nil)
	got, err := ps.takeBuffer(ctx)
	if err != nil || &got[0] != &sent[1][0] {
		t.Fatalf("take after an acknowledgement: %v (the acknowledged buffer: %v)", err, err == nil && &got[0] == &sent[1][0])
	}
	ps.onAck(sent[0], nil)
	ps.onAck(got, nil)
	foreign := make([]byte, w.RecordSize)
	writePayloadHeader(foreign, recordID(0, 1), 0)
	ps.onAck(foreign, nil) // a second acknowledgement, in a buffer not of the window
	ps.mu.Lock()
	free, inFlight := len(ps.free), ps.inFlight
	ps.mu.Unlock()
	if free != 2 || inFlight != 0 {
		t.Fatalf("after every acknowledgement: %d free, %d in flight; want 2 and 0", free, inFlight)
	}
}

// TestCheckReportsLostAcknowledgements: a run whose target never
// acknowledges a tenth of the records (no success, no failure) fails its
// check, which counts them. Before, the check compared nothing with Sent
// and the run passed with fewer records acknowledged.
func TestCheckReportsLostAcknowledgements(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	w.Warmup, w.Count, w.Window = 0, 1000, 1000 // no wait for a lost buffer
	target := &fakeTarget{lose: func(n int) bool { return n%10 == 9 }}
	result, err := runOne(context.Background(), target, w, "", &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	c := result.Check
	if c.Sent != 1000 || c.Acked != 900 || c.Unacknowledged != 100 {
		t.Fatalf("sent %d, acknowledged %d, unacknowledged %d; want 1000, 900, 100", c.Sent, c.Acked, c.Unacknowledged)
	}
	if err := c.Err(); err == nil || !strings.Contains(err.Error(), "100 records sent and never acknowledged") {
		t.Fatalf("check error %v, want the 100 records never acknowledged", err)
	}
}
