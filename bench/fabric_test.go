package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFabricEveryRecordOnce runs the fabric baseline on tiny workloads:
// the SDK-like defaults, and one batch of a few records at a time with no
// linger, so full batches wait for the window.
func TestFabricEveryRecordOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := tinyWorkload(KindProduce, 3, 3)
	target, err := StartFabric(ctx, FabricConfig{Workload: w})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if info := target.Info(); info.System != "nats-fabric" || !strings.Contains(info.Durability, "no disk") {
		t.Fatalf("info %+v does not say it stores nothing", info)
	}
	progress := &NoProgress{}
	result, err := runOne(ctx, target, w, "", progress)
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
	if result.Latency.Count != 3000 {
		t.Fatalf("latency samples %d, want 3000", result.Latency.Count)
	}

	requireSmallBatchesOnce(ctx, t, target, w)

	if _, err := runOne(ctx, target, tinyWorkload(KindConsume, 3, 3), "", progress); err == nil || !strings.Contains(err.Error(), "publishing only") {
		t.Fatalf("consume on the fabric: %v, want an error saying it measures publishing only", err)
	}
}

// TestFabricSingleServer: with one server and one replica the leader
// answers at once.
func TestFabricSingleServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := tinyWorkload(KindProduce, 1, 1)
	target, err := StartFabric(ctx, FabricConfig{Workload: w})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	result, err := runOne(ctx, target, w, "", &NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	requireExactlyOnce(t, result, false)
}

// TestSummaryShareOfFabric: the JSON summary carries the fabric's row and
// raftmq's share of it.
func TestSummaryShareOfFabric(t *testing.T) {
	r := &Report{Workload: tinyWorkload(KindProduce, 3, 3)}
	r.Results = []Result{
		{System: "raftmq", Setting: "acks=quorum,fsync=always", RecordSize: 100, RecordsPerSec: 600},
		{System: SystemFabric, Setting: fabricSetting, RecordSize: 100, RecordsPerSec: 800},
	}
	s := r.Summary()
	if s.System != "raftmq" || s.NATSFabric == nil || s.NATSFabric.RecordsPerSec != 800 || s.ShareOfFabric != 0.75 {
		t.Fatalf("summary %+v (fabric %+v), want raftmq on top and a share of 0.75", s, s.NATSFabric)
	}
	r.Results = r.Results[1:]
	if s := r.Summary(); s.System != SystemFabric || s.ShareOfFabric != 0 {
		t.Fatalf("fabric alone: %+v, want it on top with no share", s)
	}
}
