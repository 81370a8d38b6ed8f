package bench

import (
	"context"
	"testing"
	"time"
)

// TestFixedRateDurationSendsEveryRecordDue: at a fixed rate for a
// duration, a producer held back past the deadline (here: its schedule
// began 3 s ago, as after a stall that kept the whole window in flight)
// still sends every record due before the deadline, and no record due
// at or after it, and each latency counts from the record's intended
// time. Before, the producer compared the deadline with the clock after
// the stall and stopped: the records the stall held back were neither
// sent nor counted.
func TestFixedRateDurationSendsEveryRecordDue(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	w.Warmup, w.Count, w.Duration, w.Rate, w.Window = 0, 0, time.Second, 1000, 10
	ps := newProducerState(w, 0, newClock(), new(nopCounter).counter())
	producer, err := (&fakeTarget{}).NewProducer(context.Background(), 0, ps.onAck)
	if err != nil {
		t.Fatal(err)
	}
	start := ps.clock.now() - int64(3*time.Second)
	if err := ps.produce(context.Background(), producer, start); err != nil {
		t.Fatal(err)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	// 1000 records/s for 1 s: records 0..999 are due before the deadline.
	if sent, acked := ps.sent.Load(), ps.acked.count; sent != 1000 || acked != 1000 {
		t.Fatalf("%d records sent and %d acknowledged, want the 1000 due before the deadline", sent, acked)
	}
	if n := ps.latency.TotalCount(); n != 1000 {
		t.Fatalf("%d latencies recorded, want 1000", n)
	}
	// The last record was due 1 ms before the deadline, 2.001 s before
	// it was sent.
	if least := time.Duration(ps.latency.Min()) * time.Microsecond; least < 2*time.Second {
		t.Fatalf("least latency %v, want at least 2 s (counted from the intended time)", least)
	}
}
