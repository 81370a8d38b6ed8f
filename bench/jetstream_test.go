package bench

import (
	"context"
	"testing"
	"time"
)

func tinyWorkload(kind Kind, brokers, replicas int) Workload {
	w := DefaultWorkload(kind)
	w.Brokers, w.Replicas = brokers, replicas
	w.Partitions, w.Producers, w.Consumers = 2, 2, 2
	w.Count = 3000
	w.Window = 256
	w.DrainTimeout = 20 * time.Second
	w.Warmup = 0
	return w
}

// requireExactlyOnce fails unless every sent record was acknowledged once
// and, when consumed, delivered once, and nothing else was delivered.
func requireExactlyOnce(t *testing.T, result Result, consumed bool) {
	t.Helper()
	c := result.Check
	if err := c.Err(); err != nil {
		t.Fatalf("%s %s %s: %v (check %+v)", result.System, result.Setting, result.Consumer, err, c)
	}
	if c.Sent != 3000 || c.Acked != c.Sent {
		t.Fatalf("sent %d acked %d, want 3000 each", c.Sent, c.Acked)
	}
	if consumed && c.Consumed != c.Acked {
		t.Fatalf("consumed %d of %d acknowledged", c.Consumed, c.Acked)
	}
	if result.Records == 0 || result.RecordsPerSec <= 0 {
		t.Fatalf("no throughput measured: %+v", result)
	}
}

// requireSmallBatchesOnce runs w with batches of a handful of records,
// one in flight and no linger (so full batches wait for the window) and
// fails unless every record was acknowledged once.
func requireSmallBatchesOnce(ctx context.Context, t *testing.T, target Target, w Workload) {
	t.Helper()
	small := w
	small.BatchBytes = 1 << 10 // a handful of records per batch
	small.MaxInFlight = 1
	small.Linger = 0
	result, err := runOne(ctx, target, small, "", &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
}

func TestJetStreamEveryRecordOnce(t *testing.T) {
	// Five runs against a 3-server JetStream cluster: about 10 s alone,
	// but over 50 s once on a 2-core machine busy with other packages'
	// tests. The bound only keeps a hang from lasting; nothing is timed.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	target, err := StartJetStream(ctx, JetStreamConfig{Servers: 3, Setting: JetStreamLazy, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	progress := &NoProgress{}
	result, err := runOne(ctx, target, tinyWorkload(KindProduce, 3, 3), "", progress)
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
	if result.Latency.Count != 3000 {
		t.Fatalf("latency samples %d, want 3000", result.Latency.Count)
	}
	for _, kind := range []Kind{KindConsume, KindE2E} {
		for _, consumer := range target.ConsumerKinds() {
			result, err := runOne(ctx, target, tinyWorkload(kind, 3, 3), consumer, progress)
			if err != nil {
				t.Fatalf("%s %s: %v", kind, consumer, err)
			}
			requireExactlyOnce(t, result, true)
		}
	}
}
