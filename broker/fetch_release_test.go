package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/snapshot"
)

// TestCloseAnswersWaitingFetchesAtOnce: a fetch long-polling an idle
// partition is answered as the broker starts closing, so Close does not
// wait out its max wait. Before, Close waited for in-flight requests
// before it closed the only channel the poll watched besides new data and
// its timer, and took as long as the poll (or its own deadline).
func TestCloseAnswersWaitingFetchesAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client, _ := startLeadingTopic(ctx, t, "idle", fastTimings)
	type answer struct {
		reply protocol.FetchReply
		err   error
	}
	answered := make(chan answer, 1)
	go func() {
		reply, err := client.fetchFrom(1, &protocol.FetchRequest{Topic: "idle", Partition: 0, Offset: 0, MaxWait: 20 * time.Second})
		answered <- answer{reply, err}
	}()
	time.Sleep(300 * time.Millisecond) // the fetch waits
	start := time.Now()
	closeCtx, closeCancel := context.WithTimeout(ctx, 15*time.Second)
	defer closeCancel()
	if err := cluster.Broker(1).Close(closeCtx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v with a fetch waiting (max wait 20s)", took.Round(time.Millisecond))
	}
	a := <-answered
	if a.err != nil || !errors.Is(a.reply.Err, protocol.CodeShuttingDown) {
		t.Fatalf("the waiting fetch got %v / %v, want shutting_down", a.err, a.reply.Err)
	}
}

// TestTopicDeleteAnswersWaitingFetches: a fetch long-polling a partition
// whose topic is deleted is answered unknown_topic at once. Before, it
// waited out its max wait and then answered success with no records.
func TestTopicDeleteAnswersWaitingFetches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client, _ := startLeadingTopic(ctx, t, "doomed", fastTimings)
	answered := make(chan protocol.FetchReply, 1)
	go func() {
		_, reply := cluster.Broker(1).fetch(protocol.FetchRequest{Topic: "doomed", Partition: 0, Offset: 0, MaxWait: 20 * time.Second})
		answered <- reply
	}()
	time.Sleep(300 * time.Millisecond) // the fetch waits
	var deleted protocol.TopicReply
	client.admin(protocol.AdminDeleteTopic, protocol.TopicRequest{Version: 1, Name: "doomed"}, &deleted)
	if deleted.Error != nil {
		t.Fatal(deleted.Error)
	}
	select {
	case reply := <-answered:
		if !errors.Is(reply.Err, protocol.CodeUnknownTopic) {
			t.Fatalf("the waiting fetch got %v (high watermark %d), want unknown_topic", reply.Err, reply.HighWatermark)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fetch still waits 5s after its topic was deleted (max wait 20s)")
	}
}

// TestRestoredStateIsVisibleOnlyOnceTheLogIsReset: a snapshot install
// (Restore, then the log reset, in the raft driver's order) on a replica
// whose log holds a suffix that never committed must not let a fetch read
// that suffix. Restore must not publish the snapshot's applied index and
// high watermark, nor wake waiting fetches, while the log still holds the
// old entries; the reset publishes them and wakes the fetches. Before,
// Restore did both, and a fetch woken in between read the never-committed
// batches at offsets that hold other records in the real log.
func TestRestoredStateIsVisibleOnlyOnceTheLogIsReset(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	log, err := segmentlog.Open(vfs.NewMem(), "log", segmentlog.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	entries := []protocol.Entry{
		{Index: 1, Term: 1, Type: protocol.EntryRecordBatch, Data: buildBatch(t, "committed")},
		{Index: 2, Term: 1, Type: protocol.EntryRecordBatch, Data: buildBatch(t, "never-committed-1")},
		{Index: 3, Term: 1, Type: protocol.EntryRecordBatch, Data: buildBatch(t, "never-committed-2")},
	}
	if err := log.Append(entries); err != nil {
		t.Fatal(err)
	}
	if _, err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	store := &stateStore{db: db}
	consumers := &consumerState{store: store, raftGroup: 1, groups: map[string]consumerRecord{}}
	consumers.producers = newProducerState(store, 1, log)
	sm := newPartitionStateMachine(log)
	sm.consumers = consumers
	if err := sm.Apply(entries[:1]); err != nil { // only index 1 committed
		t.Fatal(err)
	}
	_, _, advanced := sm.visible() // a fetch at the high watermark waits on it

	// The new leader's snapshot, as of index 10 of term 2, 20 offsets on.
	meta := snapshot.Meta{Index: 10, Term: 2, NextOffset: 20, Configuration: snapshot.Configuration{Voters: []uint64{1, 2, 3}}}
	if err := sm.Restore(meta, strings.NewReader(`{"groups":{},"high_watermark":20}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-advanced:
		t.Fatal("Restore woke waiting fetches before the log was reset")
	default:
	}
	// A fetch looking now (a new one, or one woken otherwise) reads with
	// fetch's own bounds.
	applied, highWatermark, _ := sm.visible()
	if offset := uint64(1); offset < highWatermark {
		out, _, err := log.ReadBatches(nil, offset, applied, 1<<20)
		if err == nil {
			for _, r := range decodeFetched(t, out) {
				t.Errorf("between Restore and the log reset a fetch reads offset %d: %q (applied %d, high watermark %d)", r.offset, r.value, applied, highWatermark)
			}
		}
	}

	reset := partitionLog{timedLog{Log: log}, sm}
	if err := reset.ResetOffsets(meta.Index+1, meta.Term, meta.NextOffset); err != nil {
		t.Fatal(err)
	}
	select {
	case <-advanced:
	default:
		t.Fatal("the log reset did not wake waiting fetches")
	}
	if applied, highWatermark, _ := sm.visible(); applied != meta.Index || highWatermark != meta.NextOffset {
		t.Fatalf("after the reset: applied %d, high watermark %d; want the snapshot's %d and %d", applied, highWatermark, meta.Index, meta.NextOffset)
	}
}
