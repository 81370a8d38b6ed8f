package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestDiskEveryRecordOnce runs the disk baseline on tiny workloads: one
// file per partition, and three (a majority of two) with two producers
// on two partitions, one producer on four partitions, and one batch of a
// few records at a time with no linger, so full batches wait for the
// window. Every record is acknowledged exactly once, and the files are
// gone after Close.
func TestDiskEveryRecordOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("replicas-%d", replicas), func(t *testing.T) {
			dir := t.TempDir()
			w := tinyWorkload(KindProduce, replicas, replicas)
			var log strings.Builder
			target, err := StartDisk(ctx, DiskConfig{Workload: w, Dir: dir, Log: &log})
			if err != nil {
				t.Fatal(err)
			}
			defer target.Close()
			info := target.Info()
			if info.System != SystemDisk || !strings.HasPrefix(info.Durability, fmt.Sprintf("fdatasync quorum of %d files, ", replicas)) {
				t.Fatalf("info %+v does not say what it syncs", info)
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

			spread := w
			spread.Producers, spread.Partitions, spread.Warmup = 1, 4, 500
			result, err = runOne(ctx, target, spread, "", progress)
			if err != nil {
				t.Fatal(err)
			}
			requireExactlyOnce(t, result, false)

			requireSmallBatchesOnce(ctx, t, target, w)

			// The last run's files hold its batches: 3000 records of
			// 100 B each in every replica's files.
			var total int64
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, entry := range entries {
				info, err := entry.Info()
				if err != nil {
					t.Fatal(err)
				}
				total += info.Size()
			}
			if want := int64(replicas * 3000 * 100); total < want {
				t.Fatalf("the files hold %d bytes, want at least %d (every record in every replica)", total, want)
			}
			if err := target.Close(); err != nil {
				t.Fatal(err)
			}
			if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
				t.Fatalf("after Close the directory holds %d files (%v), want none", len(entries), err)
			}
			// One line per run (the warm-up's included), each counting
			// the run's files.
			if lines := strings.Count(log.String(), fmt.Sprintf(": %d files, ", 2*replicas)); lines != 2 {
				t.Fatalf("%d lines for the two-partition runs in the log, want 2:\n%s", lines, log.String())
			}
			if lines := strings.Count(log.String(), fmt.Sprintf(": %d files, ", 4*replicas)); lines != 2 {
				t.Fatalf("%d lines for the four-partition run and its warm-up in the log, want 2:\n%s", lines, log.String())
			}
		})
	}
}

// TestDiskRefusesConsume: the baseline measures publishing only, in the
// target and on the command line.
func TestDiskRefusesConsume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target, err := StartDisk(ctx, DiskConfig{Workload: tinyWorkload(KindProduce, 1, 1), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if _, err := runOne(ctx, target, tinyWorkload(KindConsume, 1, 1), "", &NoProgress{}); err == nil || !strings.Contains(err.Error(), "publishing only") {
		t.Fatalf("consume on the disk baseline: %v, want an error saying it measures publishing only", err)
	}
	for _, kind := range []Kind{KindConsume, KindE2E} {
		if _, err := targetSpec(SystemDisk, DefaultWorkload(kind), cliOptions{}); err == nil {
			t.Fatalf("disk baseline accepted for %s", kind)
		}
	}
	if _, err := targetSpec(SystemDisk, DefaultWorkload(KindProduce), cliOptions{raftmqURLs: "nats://127.0.0.1:4222"}); err == nil {
		t.Fatal("disk baseline accepted with --server")
	}
}

// gatedSyncs is an error-injecting file system's injector that reports
// each write and fdatasync of a replica's files as an event ("r0 write",
// "r1 sync") and holds the fdatasyncs of the replicas in held until
// release is called.
type gatedSyncs struct {
	events chan string
	mu     sync.Mutex
	held   map[string]chan struct{} // by replica, "r1"
}

func newGatedSyncs(held ...string) *gatedSyncs {
	g := &gatedSyncs{events: make(chan string, 1024), held: map[string]chan struct{}{}}
	for _, replica := range held {
		g.held[replica] = make(chan struct{})
	}
	return g
}

func (g *gatedSyncs) String() string { return "gated syncs" }

func (g *gatedSyncs) MaybeError(op errorfs.Op) error {
	_, name, _ := strings.Cut(op.Path, "-p0-")
	replica := strings.TrimSuffix(name, ".log")
	switch op.Kind {
	case errorfs.OpFileWrite:
		g.events <- replica + " write"
	case errorfs.OpFileSyncData:
		g.events <- replica + " sync"
		g.mu.Lock()
		gate := g.held[replica]
		g.mu.Unlock()
		if gate != nil {
			<-gate
		}
	}
	return nil
}

func (g *gatedSyncs) release(replica string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gate := g.held[replica]; gate != nil {
		close(gate)
		delete(g.held, replica)
	}
}

// await waits for event, skipping others.
func (g *gatedSyncs) await(t *testing.T, ctx context.Context, event string) {
	t.Helper()
	for {
		select {
		case got := <-g.events:
			if got == event {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no %q event: %v", event, ctx.Err())
		}
	}
}

// TestDiskAcksAtMajority: with three files per partition, a batch is not
// acknowledged while only one writer has it durable, and is once a
// second one has. Writers 1 and 2 are held in their first fdatasync;
// writer 0 syncs the first batch and, as proof it has reported that
// batch, goes on to write the second, queued only after it entered its
// first fdatasync. No acknowledgement may have arrived by then. Releasing
// writer 1 acknowledges both, each record once.
func TestDiskAcksAtMajority(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gate := newGatedSyncs("r1", "r2")
	w := tinyWorkload(KindProduce, 3, 3)
	w.Partitions, w.Linger = 1, 0
	target, err := StartDisk(ctx, DiskConfig{Workload: w, Dir: t.TempDir(), FS: errorfs.Wrap(vfs.Default, gate)})
	if err != nil {
		t.Fatal(err)
	}
	// Close waits for the writers: release them first.
	defer target.Close()
	defer gate.release("r2")
	defer gate.release("r1")
	if err := target.Prepare(ctx, w); err != nil {
		t.Fatal(err)
	}
	type ack struct {
		payload string
		err     error
	}
	acks := make(chan ack, 16)
	producer, err := target.NewProducer(ctx, 0, func(payload []byte, err error) { acks <- ack{string(payload), err} })
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()

	if err := producer.Send(0, []byte("first")); err != nil {
		t.Fatal(err)
	}
	gate.await(t, ctx, "r0 sync")
	// Nothing is in flight beyond the first batch and there is no linger:
	// the second record goes out at once, as a batch of its own.
	if err := producer.Send(0, []byte("second")); err != nil {
		t.Fatal(err)
	}
	gate.await(t, ctx, "r0 write")
	select {
	case a := <-acks:
		t.Fatalf("%q acknowledged (%v) while one writer of three had it durable", a.payload, a.err)
	default:
	}

	gate.release("r1")
	got := map[string]int{}
	for range 2 {
		select {
		case a := <-acks:
			if a.err != nil {
				t.Fatalf("%q failed: %v", a.payload, a.err)
			}
			got[a.payload]++
		case <-ctx.Done():
			t.Fatalf("acknowledged %v after a second writer synced, want both records", got)
		}
	}
	if got["first"] != 1 || got["second"] != 1 {
		t.Fatalf("acknowledged %v, want each record once", got)
	}
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-acks:
		t.Fatalf("%q acknowledged again", a.payload)
	default:
	}
}

// TestDiskFailsWithoutMajority: when two writers of three fail their
// fdatasync, the batch fails (its record gets the error) instead of
// waiting forever; a writer's error is sticky.
func TestDiskFailsWithoutMajority(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	injected := errors.New("injected fdatasync failure")
	failing := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSyncData && !strings.HasSuffix(op.Path, "-r0.log") {
			return injected
		}
		return nil
	})
	w := tinyWorkload(KindProduce, 3, 3)
	w.Partitions = 1
	target, err := StartDisk(ctx, DiskConfig{Workload: w, Dir: t.TempDir(), FS: errorfs.Wrap(vfs.Default, failing)})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := target.Prepare(ctx, w); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	producer, err := target.NewProducer(ctx, 0, func(_ []byte, err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for _, record := range []string{"one", "two"} {
		if err := producer.Send(0, []byte(record)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, injected) {
				t.Fatalf("%s: outcome %v, want the injected failure", record, err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no outcome with two writers of three failing", record)
		}
	}
}

// TestSummaryShareOfDisk: the JSON summary carries the disk baseline's
// row and raftmq's share of it beside the fabric's.
func TestSummaryShareOfDisk(t *testing.T) {
	r := &Report{Workload: tinyWorkload(KindProduce, 3, 3)}
	r.Results = []Result{
		{System: "raftmq", Setting: "acks=quorum,fsync=always", RecordSize: 100, RecordsPerSec: 600},
		{System: SystemDisk, Setting: diskSetting, RecordSize: 100, RecordsPerSec: 1200},
		{System: SystemFabric, Setting: fabricSetting, RecordSize: 100, RecordsPerSec: 800},
	}
	s := r.Summary()
	if s.System != "raftmq" || s.Disk == nil || s.Disk.RecordsPerSec != 1200 || s.ShareOfDisk != 0.5 || s.ShareOfFabric != 0.75 {
		t.Fatalf("summary %+v (disk %+v), want raftmq on top, a share of the disk of 0.5 and of the fabric of 0.75", s, s.Disk)
	}
	r.Results = r.Results[1:2]
	if s := r.Summary(); s.System != SystemDisk || s.ShareOfDisk != 0 {
		t.Fatalf("disk alone: %+v, want it on top with no share", s)
	}
}

// TestParseFlagsVsDisk: --vs and --systems accept the disk baseline, and
// its spec starts it in the run's data directory.
func TestParseFlagsVsDisk(t *testing.T) {
	w, opts, err := parseFlags(KindProduce, []string{"--count", "1000", "--vs", SystemDisk + "," + SystemFabric}, os.Stderr)
	if err != nil || strings.Join(opts.systems, ",") != "raftmq,"+SystemDisk+","+SystemFabric {
		t.Fatalf("--vs disk,nats-fabric: systems %v, %v", opts.systems, err)
	}
	_, opts, err = parseFlags(KindProduce, []string{"--systems", SystemDisk}, os.Stderr)
	if err != nil || strings.Join(opts.systems, ",") != SystemDisk {
		t.Fatalf("--systems disk: systems %v, %v", opts.systems, err)
	}
	spec, err := targetSpec(SystemDisk, w, opts)
	if err != nil {
		t.Fatalf("disk spec for produce: %v", err)
	}
	dir := t.TempDir()
	target, err := spec.Start(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := target.Prepare(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != w.Replicas*w.Partitions {
		t.Fatalf("%d files in the data directory (%v), want %d", len(entries), err, w.Replicas*w.Partitions)
	}
}
