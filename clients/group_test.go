package clients_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/protocol"
)

// groupHarness runs group members, each on its own Client, and checks the
// group's invariants as they run.
type groupHarness struct {
	t     *testing.T
	topic string
	group string
	mu    sync.Mutex
	owner map[uint32]string // partition -> member, from the callbacks
	// overlap holds partitions assigned to a member while the callbacks
	// still showed another owner: partition -> that previous owner. It is
	// legitimate only when the coordinator expired the previous owner's
	// session (a member stalled past the session timeout, as a loaded
	// machine can make it): then the previous owner must report the
	// partition lost (WithOnLost). Every entry must be resolved so; one
	// that is not is two owners at a time.
	overlap map[uint32]string
	errs    []error
	seen    map[uint32]map[uint64]bool // processed offsets
	events  chan struct{}
	start0  time.Time
	trace   []string // what the members saw, in the order the harness saw it
}

type harnessMember struct {
	id       string
	client   *clients.Client
	consumer *clients.GroupConsumer
	stop     chan struct{}
	done     chan struct{}
}

func (h *groupHarness) fail(format string, args ...any) {
	h.mu.Lock()
	h.errs = append(h.errs, fmt.Errorf(format, args...))
	h.mu.Unlock()
}

// tracef records an event; h.mu is held.
func (h *groupHarness) tracef(format string, args ...any) {
	if h.start0.IsZero() {
		h.start0 = time.Now()
	}
	h.trace = append(h.trace, fmt.Sprintf("%8.3fs ", time.Since(h.start0).Seconds())+fmt.Sprintf(format, args...))
}

func (h *groupHarness) notify() {
	select {
	case h.events <- struct{}{}:
	default:
	}
}

func (h *groupHarness) start(ctx context.Context, id string, sessionTimeout time.Duration) *harnessMember {
	client := connectDev(ctx, h.t)
	m := &harnessMember{id: id, client: client, stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	m.consumer, err = client.NewGroupConsumer(ctx, h.group, []string{h.topic},
		clients.WithMemberID(id), clients.WithSessionTimeout(sessionTimeout), clients.WithAutoCommitInterval(50*time.Millisecond),
		clients.WithGroupConsumerOptions(clients.WithFetchMaxWait(100*time.Millisecond)),
		clients.WithOnAssigned(func(_ context.Context, partitions []clients.TopicPartition) {
			h.mu.Lock()
			h.tracef("%s assigned %v", id, partitions)
			for _, tp := range partitions {
				if other := h.owner[tp.Partition]; other != "" && other != id {
					if prev, ok := h.overlap[tp.Partition]; ok && prev != other {
						h.errs = append(h.errs, fmt.Errorf("partition %d assigned to %s while %s and %s own it", tp.Partition, id, other, prev))
					}
					h.overlap[tp.Partition] = other
				}
				h.owner[tp.Partition] = id
			}
			h.mu.Unlock()
			h.notify()
		}),
		clients.WithOnRevoked(func(_ context.Context, partitions []clients.TopicPartition) {
			h.mu.Lock()
			h.tracef("%s revoked %v", id, partitions)
			for _, tp := range partitions {
				if h.owner[tp.Partition] == id {
					delete(h.owner, tp.Partition)
				}
				if h.overlap[tp.Partition] == id {
					h.errs = append(h.errs, fmt.Errorf("partition %d assigned to %s before %s revoked it", tp.Partition, h.owner[tp.Partition], id))
				}
			}
			h.mu.Unlock()
			h.notify()
		}),
		clients.WithOnLost(func(_ context.Context, partitions []clients.TopicPartition) {
			h.mu.Lock()
			h.tracef("%s lost %v", id, partitions)
			for _, tp := range partitions {
				if h.owner[tp.Partition] == id {
					delete(h.owner, tp.Partition)
				}
				if h.overlap[tp.Partition] == id {
					delete(h.overlap, tp.Partition) // its session had expired
				}
			}
			h.mu.Unlock()
			h.notify()
		}))
	if err != nil {
		h.t.Fatal(err)
	}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			pollCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			records, err := m.consumer.Poll(pollCtx)
			cancel()
			select {
			case <-m.stop:
				return // killed: whatever it polled last is never processed
			default:
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				h.fail("member %s poll: %v", id, err)
				return
			}
			h.mu.Lock()
			for _, r := range records {
				if h.seen[r.Partition] == nil {
					h.seen[r.Partition] = map[uint64]bool{}
				}
				h.seen[r.Partition][r.Offset] = true
			}
			h.mu.Unlock()
			if len(records) > 0 {
				h.notify()
			}
		}
	}()
	return m
}

// resolved waits until every overlap is resolved by a lost callback of the
// previous owner; a member hears that its session expired at its next
// heartbeat, so a few session timeouts are plenty.
func (h *groupHarness) resolved(ctx context.Context, session time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*session)
	defer cancel()
	for {
		h.mu.Lock()
		pending := maps.Clone(h.overlap)
		h.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.t.Logf("events:\n%s", strings.Join(h.trace, "\n"))
			h.mu.Unlock()
			h.t.Fatalf("partitions assigned while their previous owner (partition -> owner) %v still owned them and was not expired", pending)
		case <-h.events:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill stops a member without leaving or committing: its connection goes.
func (h *groupHarness) kill(m *harnessMember) {
	close(m.stop)
	<-m.done
	h.mu.Lock()
	h.tracef("%s killed", m.id)
	for p, owner := range h.owner {
		if owner == m.id {
			delete(h.owner, p)
		}
	}
	h.mu.Unlock()
	m.client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = m.consumer.Close(ctx) // fails: the client is closed
}

func (h *groupHarness) waitFor(ctx context.Context, what string, cond func() bool) {
	h.t.Helper()
	for {
		h.mu.Lock()
		ok, errs := cond(), errors.Join(h.errs...)
		h.mu.Unlock()
		if errs != nil {
			h.mu.Lock()
			h.t.Logf("events:\n%s", strings.Join(h.trace, "\n"))
			h.mu.Unlock()
			h.t.Fatal(errs)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Logf("events:\n%s", strings.Join(h.trace, "\n"))
			h.t.Fatalf("waiting for %s: %v (owners %v)", what, ctx.Err(), h.owner)
		case <-h.events:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (h *groupHarness) owners() map[string]int {
	out := map[string]int{}
	for _, m := range h.owner {
		out[m]++
	}
	return out
}

// TestGroupMembersSharePartitionsAndTakeOverFromADeadMember runs three
// members on a six-partition topic while records are produced: each
// partition has one owner at a time, a killed member's partitions move
// within the session timeout, every record is processed, and committed
// offsets never go backwards.
func TestGroupMembersSharePartitionsAndTakeOverFromADeadMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := connectDev(ctx, t)
	topic := fmt.Sprintf("group-work-%d", time.Now().UnixNano())
	if _, err := admin.CreateTopic(ctx, topic, clients.WithPartitions(6), clients.WithReplicas(3)); err != nil {
		t.Fatal(err)
	}
	producer, err := admin.NewProducer(clients.WithLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)
	// acked[p] is the offset after the last record of p the cluster
	// acknowledged (acks=quorum: committed, durable on a quorum).
	var ackedMu sync.Mutex
	acked := map[uint32]uint64{}
	produce := func(n int) {
		for i := range n {
			producer.Produce(ctx, &clients.Record{Topic: topic, Partition: uint32(i % 6), Value: []byte("v")}, func(r *clients.Record, err error) {
				if err == nil {
					ackedMu.Lock()
					acked[r.Partition] = max(acked[r.Partition], r.Offset+1)
					ackedMu.Unlock()
				}
			})
		}
		if err := producer.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(600)

	h := &groupHarness{t: t, topic: topic, group: "workers-" + topic, owner: map[uint32]string{}, overlap: map[uint32]string{},
		seen: map[uint32]map[uint64]bool{}, events: make(chan struct{}, 1)}
	// A session of a few heartbeat round trips: with 1 s (heartbeats
	// every 333 ms, each allowed 333 ms through a forwarding broker to the
	// coordinator) a loaded 2-core machine expired live members over and
	// over, and the group never settled before the test's deadline.
	const session = 3 * time.Second
	members := []*harnessMember{h.start(ctx, "a", session), h.start(ctx, "b", session), h.start(ctx, "c", session)}
	defer func() {
		for _, m := range members[1:] {
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = m.consumer.Close(closeCtx)
			cancel()
			m.client.Close()
		}
	}()

	// Committed offsets never go backwards.
	monitorDone := make(chan struct{})
	stopMonitor := make(chan struct{})
	go func() {
		defer close(monitorDone)
		last := map[uint32]uint64{}
		partitions := make([]clients.TopicPartition, 6)
		for i := range partitions {
			partitions[i] = clients.TopicPartition{Topic: topic, Partition: uint32(i)}
		}
		for {
			select {
			case <-stopMonitor:
				return
			case <-time.After(20 * time.Millisecond):
			}
			committed, err := admin.FetchCommitted(ctx, h.group, partitions)
			if err != nil {
				if ctx.Err() == nil {
					h.fail("fetch committed: %v", err)
				}
				return
			}
			for _, c := range committed {
				if c.Offset < last[c.Partition] {
					h.fail("partition %d committed offset went back from %d to %d", c.Partition, last[c.Partition], c.Offset)
				}
				last[c.Partition] = c.Offset
			}
		}
	}()

	h.waitFor(ctx, "an even assignment", func() bool {
		o := h.owners()
		return len(h.owner) == 6 && o["a"] == 2 && o["b"] == 2 && o["c"] == 2
	})
	produce(300)
	h.resolved(ctx, session) // the killed member cannot report anything later
	killed := time.Now()
	h.kill(members[0])
	h.waitFor(ctx, "the dead member's partitions to move", func() bool {
		o := h.owners()
		return len(h.owner) == 6 && o["b"] == 3 && o["c"] == 3
	})
	// The move follows the session expiry; on a loaded machine the
	// rebalance and the survivors' claims after it take seconds more (6 s
	// seen with GOMAXPROCS=1 next to other test runs). The bound only
	// catches a move that waited for something else than the expiry.
	moved := time.Since(killed)
	if moved > session+10*time.Second {
		t.Fatalf("partitions moved %v after the member died; session timeout %v", moved, session)
	}
	produce(300)
	// Every acknowledged record is visible to the next read: the leader
	// answers ListOffsets only after it applied what was committed when the
	// request arrived (a produce is acknowledged at commit, the high
	// watermark moves at apply). So the high watermark read right after
	// Flush is exactly the acknowledged end.
	hw := map[uint32]uint64{}
	ackedMu.Lock()
	for p := range uint32(6) {
		hw[p] = acked[p]
		if hw[p] != 200 {
			t.Fatalf("partition %d: acknowledged end %d, want 200 (1200 records over 6 partitions)", p, hw[p])
		}
	}
	ackedMu.Unlock()
	for p := range uint32(6) {
		offsets, err := admin.ListOffsets(ctx, topic, p, clients.Latest())
		if err != nil {
			t.Fatal(err)
		}
		if offsets.HighWatermark != hw[p] {
			t.Fatalf("partition %d: high watermark %d right after the flush, want the acknowledged end %d", p, offsets.HighWatermark, hw[p])
		}
	}
	h.waitFor(ctx, "every record processed", func() bool {
		for p, end := range hw {
			for o := range end {
				if !h.seen[p][o] {
					return false
				}
			}
		}
		return true
	})
	h.resolved(ctx, session)
	for _, m := range members[1:] {
		if err := m.consumer.Commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	close(stopMonitor)
	<-monitorDone
	desc, err := admin.DescribeGroup(ctx, h.group)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.Members) != 2 || len(desc.Partitions) != 6 {
		t.Fatalf("describe: %+v", desc)
	}
	for _, p := range desc.Partitions {
		if p.Offset != hw[p.Partition] || p.LagRecords != 0 || p.Owner == "" || p.Owner == "a" {
			t.Fatalf("partition %d after processing everything: %+v (high watermark %d)", p.Partition, p, hw[p.Partition])
		}
	}
	t.Logf("partitions moved %v after the kill", moved)

	// Reset and delete are refused while members are active.
	if _, err := admin.ResetGroupOffsets(ctx, h.group, topic, clients.Earliest()); !errors.Is(err, protocol.CodeGroupNotEmpty) {
		t.Fatalf("reset with members: %v", err)
	}
	if err := admin.DeleteGroup(ctx, h.group); !errors.Is(err, protocol.CodeGroupNotEmpty) {
		t.Fatalf("delete with members: %v", err)
	}
}

// TestGroupResumesAfterCommittedOffsetAndResets checks that a new member
// resumes exactly after the committed offset, that the reset policy applies
// only without an offset, and reset-offsets and delete once the group is empty.
func TestGroupResumesAfterCommittedOffsetAndResets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := connectDev(ctx, t)
	topic := fmt.Sprintf("group-resume-%d", time.Now().UnixNano())
	if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(1)); err != nil {
		t.Fatal(err)
	}
	producer, err := client.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(ctx)
	for i := range 10 {
		if err := producer.ProduceSync(ctx, &clients.Record{Topic: topic, Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	group := "resume-" + topic
	// consume starts a member, waits until it owns the partition (a loaded
	// machine can take seconds to assign it) and polls: until records
	// come when wantRecords, else once for a second.
	consume := func(wantRecords bool, opts ...clients.GroupConsumerOption) (*clients.GroupConsumer, []*clients.Record) {
		t.Helper()
		// The session timeout is long so that a stalled heartbeat on a
		// loaded machine does not expire the only member; Close leaves
		// the group at once anyway.
		opts = append(opts, clients.WithAutoCommitInterval(0), clients.WithSessionTimeout(5*time.Second))
		g, err := client.NewGroupConsumer(ctx, group, []string{topic}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for attempt := 0; len(g.Assigned()) == 0; attempt++ {
			select {
			case <-ctx.Done():
				t.Fatal("the member was never assigned the partition")
			case <-time.After(10 * time.Millisecond):
			}
		}
		for {
			pollCtx, cancel := context.WithTimeout(ctx, time.Second)
			records, err := g.Poll(pollCtx)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			if len(records) > 0 || !wantRecords {
				return g, records
			}
			if ctx.Err() != nil {
				t.Fatal("no records polled")
			}
		}
	}
	// Latest without an offset: nothing old.
	g, records := consume(false, clients.WithResetPolicy(clients.Latest()))
	if len(records) != 0 {
		t.Fatalf("reset policy latest delivered %d old records", len(records))
	}
	if err := g.CommitOffsets(ctx, map[clients.TopicPartition]uint64{{Topic: topic}: 4}); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The committed offset wins over the reset policy.
	g, records = consume(true, clients.WithResetPolicy(clients.Latest()))
	if len(records) == 0 || records[0].Offset != 4 {
		t.Fatalf("resumed at %+v, want offset 4", records)
	}
	if err := g.CommitOffsets(ctx, map[clients.TopicPartition]uint64{{Topic: topic}: 11}); !errors.Is(err, protocol.CodeOffsetOutOfRange) {
		t.Fatalf("commit beyond the high watermark: %v", err)
	}
	if err := g.Close(ctx); err != nil { // commits the records Poll returned
		t.Fatal(err)
	}
	committed, err := client.FetchCommitted(ctx, group, []clients.TopicPartition{{Topic: topic}})
	if err != nil || committed[0].Offset != records[len(records)-1].Offset+1 {
		t.Fatalf("commit on close: %+v %v", committed, err)
	}
	results, err := client.ResetGroupOffsets(ctx, group, topic, clients.AtOffset(2))
	if err != nil || len(results) != 1 || results[0].Offset != 2 {
		t.Fatalf("reset to 2: %+v %v", results, err)
	}
	g, records = consume(true)
	if len(records) == 0 || records[0].Offset != 2 {
		t.Fatalf("after reset resumed at %+v", records)
	}
	_ = g.Close(ctx)
	groups, err := client.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range groups {
		found = found || s.Group == group && s.Members == 0
	}
	if !found {
		t.Fatalf("group %s not listed empty: %+v", group, groups)
	}
	if err := client.DeleteGroup(ctx, group); err != nil {
		t.Fatal(err)
	}
	committed, err = client.FetchCommitted(ctx, group, []clients.TopicPartition{{Topic: topic}})
	if err != nil || committed[0].Committed {
		t.Fatalf("offsets after delete: %+v %v", committed, err)
	}
	if _, err := client.DescribeGroup(ctx, group); !errors.Is(err, protocol.CodeUnknownGroup) {
		t.Fatalf("describe deleted group: %v", err)
	}
}

// TestDescribeGroupListsADeletedTopicWithoutPartitions: describing a group
// one of whose topics was deleted lists that topic with no partitions and
// the others as before. Before, the whole describe failed with
// unknown_topic, while the group was still listed.
func TestDescribeGroupListsADeletedTopicWithoutPartitions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := connectDev(ctx, t)
	suffix := time.Now().UnixNano()
	kept, deleted := fmt.Sprintf("describe-kept-%d", suffix), fmt.Sprintf("describe-deleted-%d", suffix)
	group := fmt.Sprintf("describe-%d", suffix)
	for _, topic := range []string{kept, deleted} {
		if _, err := client.CreateTopic(ctx, topic, clients.WithPartitions(2)); err != nil {
			t.Fatal(err)
		}
		if _, err := client.ResetGroupOffsets(ctx, group, topic, clients.Earliest()); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.DeleteTopic(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	desc, err := client.DescribeGroup(ctx, group)
	if err != nil {
		t.Fatalf("describe of a group with a deleted topic: %v", err)
	}
	if !slices.Contains(desc.Topics, deleted) || !slices.Contains(desc.Topics, kept) {
		t.Fatalf("topics %v, want both %s and %s", desc.Topics, kept, deleted)
	}
	for _, p := range desc.Partitions {
		if p.Topic != kept {
			t.Fatalf("partition %s/%d of the deleted topic described", p.Topic, p.Partition)
		}
	}
	if len(desc.Partitions) != 2 {
		t.Fatalf("%d partitions described, want the kept topic's 2", len(desc.Partitions))
	}
}

// TestDescribeGroupNamingAnUnknownTopicFails: a topic the caller names
// that does not exist (a typo) fails with unknown_topic, unlike a deleted
// topic of the group's. Before, both were skipped, and describing an
// unknown group with a misspelt topic succeeded with an empty description
// (found in review).
func TestDescribeGroupNamingAnUnknownTopicFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := connectDev(ctx, t, clients.WithUnknownTopicWait(200*time.Millisecond))
	suffix := time.Now().UnixNano()
	desc, err := client.DescribeGroup(ctx, fmt.Sprintf("nosuchgroup-%d", suffix), fmt.Sprintf("nosuchtopic-%d", suffix))
	if !errors.Is(err, protocol.CodeUnknownTopic) {
		t.Fatalf("describe of an unknown group naming an unknown topic: %v (description %+v), want unknown_topic", err, desc)
	}
}
