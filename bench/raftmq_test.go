package bench

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/clients"
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

// TestRaftmqTargetDeletesItsTopicsFromAnExistingCluster: a target on an
// existing cluster (--server) deletes the topic of its last run when it
// closes, unless told to keep it; before, every bench --server left a
// raftmq-bench-... topic behind.
func TestRaftmqTargetDeletesItsTopicsFromAnExistingCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := tinyWorkload(KindProduce, 1, 1)
	w.Partitions = 1
	cluster, err := startRaftmqCluster(ctx, t.TempDir(), w)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.close()
	admin, err := clients.Connect(ctx, strings.Join(cluster.urls(), ","))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	benchTopics := func() []string {
		t.Helper()
		topics, err := admin.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, topic := range topics {
			if strings.HasPrefix(topic.Name, "raftmq-bench-") {
				names = append(names, topic.Name)
			}
		}
		return names
	}
	for _, keep := range []bool{false, true} {
		var log bytes.Buffer
		target, err := StartRaftmq(ctx, RaftmqConfig{URLs: cluster.urls(), Workload: w, KeepTopics: keep, Log: &log})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a warm-up, then the measured run
			if err := target.Prepare(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		if err := target.Close(); err != nil {
			t.Fatal(err)
		}
		if got, want := len(benchTopics()), map[bool]int{false: 0, true: 1}[keep]; got != want {
			t.Errorf("keep topics %v: %d bench topics left after Close, want %d; log %q", keep, got, want, log.String())
		}
	}
}

// TestServerTakesClusterName: bench --server --cluster-name reaches a
// cluster whose brokers were started under another name; bench had no
// --cluster-name, so it could not. Without --server it is refused.
func TestServerTakesClusterName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := broker.StartDev(ctx, broker.DevConfig{Nodes: 1, DataDir: t.TempDir(), ClientListen: "127.0.0.1:0", ClusterName: "bench-named"})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close(context.Background())
	w, opts, err := parseFlags(KindProduce, []string{"--server", cluster.ClientURLs()[0], "--cluster-name", "bench-named",
		"--brokers", "1", "--partitions", "1", "--count", "100"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := targetSpec("raftmq", w, opts)
	if err != nil {
		t.Fatal(err)
	}
	target, err := spec.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	prepareCtx, cancelPrepare := context.WithTimeout(ctx, 20*time.Second)
	defer cancelPrepare()
	if err := target.Prepare(prepareCtx, w); err != nil {
		t.Fatalf("create the bench topic under --cluster-name: %v", err)
	}

	w, opts, err = parseFlags(KindProduce, []string{"--cluster-name", "bench-named"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := targetSpec("raftmq", w, opts); err == nil || !strings.Contains(err.Error(), "--cluster-name is for --server") {
		t.Errorf("--cluster-name without --server: %v", err)
	}
}
