package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// countingTarget counts the records a target is sent and its Prepare calls.
type countingTarget struct {
	Target
	prepares atomic.Int64
	sends    atomic.Int64
}

func (t *countingTarget) Prepare(ctx context.Context, w Workload) error {
	t.prepares.Add(1)
	return t.Target.Prepare(ctx, w)
}

func (t *countingTarget) NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error) {
	p, err := t.Target.NewProducer(ctx, id, onAck)
	if err != nil {
		return nil, err
	}
	return &countingProducer{Producer: p, sends: &t.sends}, nil
}

type countingProducer struct {
	Producer
	sends *atomic.Int64
}

func (p *countingProducer) Send(partition int, payload []byte) error {
	p.sends.Add(1)
	return p.Producer.Send(partition, payload)
}

// TestWarmupIsPublishedAndNotMeasured: a run with a warm-up publishes the
// warm-up records first, on partitions the measured run does not see (a
// replay delivers exactly the measured records), and counts only the
// measured ones.
func TestWarmupIsPublishedAndNotMeasured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := tinyWorkload(KindProduce, 3, 3)
	w.Warmup = 1000
	raftmq, err := StartRaftmq(ctx, RaftmqConfig{Dir: t.TempDir(), Workload: w})
	if err != nil {
		t.Fatal(err)
	}
	defer raftmq.Close()
	target := &countingTarget{Target: raftmq}
	result, err := runOne(ctx, target, w, "", &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
	if got := target.sends.Load(); got != w.Count+w.Warmup {
		t.Fatalf("%d records sent to the target, want %d measured + %d warm-up", got, w.Count, w.Warmup)
	}
	if got := target.prepares.Load(); got != 2 {
		t.Fatalf("Prepare called %d times, want 2 (warm-up, then the measured run)", got)
	}

	w = tinyWorkload(KindConsume, 3, 3)
	w.Warmup = 1000
	result, err = runOne(ctx, target, w, ConsumerFetch, &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, true)
}

func TestWarmupValidated(t *testing.T) {
	w := DefaultWorkload(KindProduce)
	if w.Warmup <= 0 {
		t.Fatalf("default warm-up %d, want on", w.Warmup)
	}
	w.Warmup = -1
	if err := w.Validate(); err == nil {
		t.Fatal("a negative warm-up was accepted")
	}
}
