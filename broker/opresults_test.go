package broker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/protocol"
)

// TestConsumerOpResultIsKeptUntilItsProposerTakesIt: the results of a
// consumer-ops entry stay until its proposer takes them, however many
// entries apply after it before the proposer runs, and a follower keeps no
// results. Here a replica applies 1,100 commits as a follower, becomes
// leader and proposes a commit X that applies in one Apply call with 1,025
// record batches behind it (raft applies up to 4 MiB at once). Before,
// the follower kept 1,025 untaken results and the sweep of all but the
// newest 1,024 indexes deleted X's before proposeOps took it, which then
// answered the applied commit with the non-retriable "applied entry has
// no results".
func TestConsumerOpResultIsKeptUntilItsProposerTakesIt(t *testing.T) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietPebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	consumers := &consumerState{store: &stateStore{db: db}, raftGroup: 7, groups: map[string]consumerRecord{}}
	index := uint64(0)
	commitEntry := func(offset uint64) protocol.Entry {
		index++
		op := protocol.ConsumerOp{Kind: protocol.ConsumerOpCommit, Group: "g", Member: "m", Epoch: 1, Offset: offset, Time: time.Now().UnixMilli()}
		return protocol.Entry{Index: index, Term: 1, Type: protocol.EntryControl, Data: protocol.AppendConsumerOps(nil, []protocol.ConsumerOp{op})}
	}
	for offset := range uint64(1100) {
		if err := consumers.apply([]protocol.Entry{commitEntry(offset)}); err != nil {
			t.Fatal(err)
		}
	}
	if kept := len(consumers.results.byIndex); kept != 0 {
		t.Errorf("a follower keeps %d results nobody will take", kept)
	}

	began := consumers.results.begin(index)
	entries := []protocol.Entry{commitEntry(4242)}
	proposed := index
	batch := buildBatch(t, "v")
	for range 1025 {
		index++
		entries = append(entries, protocol.Entry{Index: index, Term: 2, Type: protocol.EntryRecordBatch, Data: batch})
	}
	if err := consumers.apply(entries); err != nil {
		t.Fatal(err)
	}
	results, ok := consumers.results.take(proposed)
	consumers.results.end(began)
	if !ok || len(results) != 1 || results[0] != nil {
		t.Fatalf("results of the applied commit at %d: %v (kept: %v), want one nil", proposed, results, ok)
	}
	if kept := len(consumers.results.byIndex); kept != 0 {
		t.Fatalf("%d results kept after the proposer ended", kept)
	}
}

// TestControllerRejectionIsKeptUntilItsProposerTakesIt: a rejected
// controller command reads as rejected to its proposer however many
// entries apply after it before the proposer runs. Here a controller
// replica applies 4,200 refused creates of an existing topic as a
// follower, becomes leader and proposes another, which applies in one
// Apply call with 4,100 more refused creates behind it. Before, the sweep
// of all but the newest 4,096 indexes deleted its rejection before the
// proposer took it, and the refused create was reported as a success.
func TestControllerRejectionIsKeptUntilItsProposerTakesIt(t *testing.T) {
	controller := newControllerStateMachine([]uint64{1}, nil)
	index := uint64(0)
	entry := func(cmd controllerCommand) protocol.Entry {
		index++
		data, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.Entry{Index: index, Term: 1, Type: protocol.EntryControl, Data: data}
	}
	create := controllerCommand{Op: opCreateTopic, Topic: "orders", Partitions: 1, Replicas: 1, CaseUnique: true, Time: time.Now()}
	if err := controller.Apply([]protocol.Entry{entry(controllerCommand{Op: opRegisterBroker, Broker: 1}), entry(create)}); err != nil {
		t.Fatal(err)
	}
	for range 4200 {
		if err := controller.Apply([]protocol.Entry{entry(create)}); err != nil {
			t.Fatal(err)
		}
	}
	if kept := len(controller.results.byIndex); kept != 0 {
		t.Errorf("a follower keeps %d rejections nobody will take", kept)
	}

	began := controller.results.begin(index)
	entries := []protocol.Entry{entry(create)}
	proposed := index
	for range 4100 {
		entries = append(entries, entry(create))
	}
	if err := controller.Apply(entries); err != nil {
		t.Fatal(err)
	}
	rejected, _ := controller.results.take(proposed)
	controller.results.end(began)
	if rejected == nil || rejected.Code != protocol.CodeTopicExists {
		t.Fatalf("the refused create at %d reads as %v, want topic_exists", proposed, rejected)
	}
	if kept := len(controller.results.byIndex); kept != 0 {
		t.Fatalf("%d rejections kept after the proposer ended", kept)
	}
}

// TestControllerAcceptanceIsTellableFromAnEntryNotAppliedHere: propose
// tells an accepted command (its Apply kept a nil result) from one this
// replica never applied (a snapshot it installed covered the entry), whose
// outcome is unknown and answered with a retriable timeout. Before, Apply
// kept only rejections, so a command refused before a snapshot covered it
// read as a success.
func TestControllerAcceptanceIsTellableFromAnEntryNotAppliedHere(t *testing.T) {
	controller := newControllerStateMachine([]uint64{1}, nil)
	began := controller.results.begin(0)
	defer controller.results.end(began)
	data, err := json.Marshal(controllerCommand{Op: opRegisterBroker, Broker: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.Apply([]protocol.Entry{{Index: 1, Term: 1, Type: protocol.EntryControl, Data: data}}); err != nil {
		t.Fatal(err)
	}
	if rejected, ok := controller.results.take(1); !ok || rejected != nil {
		t.Fatalf("the accepted command at 1 reads as (%v, kept %v), want (nil, kept)", rejected, ok)
	}
	if _, ok := controller.results.take(2); ok {
		t.Fatal("a result for entry 2, which was never applied here")
	}
	if err := outcomeUnknown("controller", 2); !err.Retriable() {
		t.Fatalf("the outcome-unknown error %v is not retriable", err)
	}
}

// TestProposerResultsKeepWhatAWaitingProposerMayTake: a result is kept
// only above the applied index at which the oldest waiting proposer
// began, and kept until no proposer that may take it waits.
func TestProposerResultsKeepWhatAWaitingProposerMayTake(t *testing.T) {
	var results proposerResults[string]
	results.keep(5, "nobody waits")
	first := results.begin(10)
	second := results.begin(20)
	results.keep(10, "at or below every proposer's start")
	results.keep(15, "the first's, perhaps")
	results.keep(25, "either's")
	results.end(first)
	if _, ok := results.take(15); ok {
		t.Fatal("index 15 kept after the only proposer that began below it ended")
	}
	if r, ok := results.take(25); !ok || r != "either's" {
		t.Fatalf("index 25 while the second proposer waits: %q, %v", r, ok)
	}
	results.keep(30, "the second's, perhaps")
	results.end(second)
	if len(results.byIndex) != 0 || len(results.waiting) != 0 {
		t.Fatalf("after every proposer ended: results %v, waiting %v", results.byIndex, results.waiting)
	}
	for _, index := range []uint64{5, 10} {
		if _, ok := results.take(index); ok {
			t.Fatalf("index %d was kept with no proposer that may take it", index)
		}
	}
}
