package bench

import (
	"context"
	"testing"
	"time"
)

func TestRaftmqEveryRecordOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := tinyWorkload(KindProduce, 3, 3)
	target, err := StartRaftmq(ctx, RaftmqConfig{Dir: t.TempDir(), Workload: w})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	progress := &NoProgress{}
	result, err := runOne(ctx, target, w, "", progress)
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
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
