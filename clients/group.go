package clients

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// GroupConsumerOption configures a GroupConsumer (Client.NewGroupConsumer).
type GroupConsumerOption func(*groupConfig) error

type groupConfig struct {
	memberID           string
	sessionTimeout     time.Duration
	autoCommitInterval time.Duration
	commitOnClose      bool
	resetTo            Position
	onAssigned         func(context.Context, []TopicPartition)
	onRevoked          func(context.Context, []TopicPartition)
	onLost             func(context.Context, []TopicPartition)
	consumerOptions    []ConsumerOption
}

// WithSessionTimeout is how long the coordinator waits for a heartbeat
// before it removes the member and moves its partitions. The member
// heartbeats at a third of it (at most every 3 s). Default 10s.
func WithSessionTimeout(d time.Duration) GroupConsumerOption {
	return func(c *groupConfig) error {
		if d < 100*time.Millisecond || d > 10*time.Minute {
			return fmt.Errorf("clients: session timeout %v: want 100ms to 10m", d)
		}
		c.sessionTimeout = d
		return nil
	}
}

// WithAutoCommitInterval commits at this interval, and before a partition
// is given up, the offsets of the records returned by Poll calls before the
// latest one (the application is done with them; see Poll). 0 turns automatic
// commits off (use Commit, CommitOffsets or CommitAsync). Default 5s.
func WithAutoCommitInterval(d time.Duration) GroupConsumerOption {
	return func(c *groupConfig) error {
		if d < 0 {
			return fmt.Errorf("clients: auto-commit interval %v is negative", d)
		}
		c.autoCommitInterval = d
		return nil
	}
}

// WithCommitOnClose says whether Close commits the offsets of the records
// Poll returned before it leaves the group. Default true.
func WithCommitOnClose(commit bool) GroupConsumerOption {
	return func(c *groupConfig) error {
		c.commitOnClose = commit
		return nil
	}
}

// WithResetPolicy is where a partition starts when the group has no
// committed offset for it (or the committed one was deleted by retention),
// and where it continues when its fetch offset goes out of range while the
// member consumes it (retention deleted the records before it): Earliest
// or Latest. Default Earliest. The member resolves it to an offset when
// it is assigned the partition and commits that offset as its position
// (unless it commits another first), so a member that hands the partition
// on before polling any of its records hands on that offset, not a policy
// the next owner would resolve again. A WithOffsetReset passed with
// WithGroupConsumerOptions takes the place of the latter.
func WithResetPolicy(position Position) GroupConsumerOption {
	return func(c *groupConfig) error {
		if position.kind != positionEarliest && position.kind != positionLatest {
			return errors.New("clients: reset policy must be Earliest or Latest")
		}
		c.resetTo = position
		return nil
	}
}

// WithOnAssigned is called (from the group's background goroutine) with
// the partitions newly assigned, after their start positions are set.
// Default none.
func WithOnAssigned(f func(ctx context.Context, partitions []TopicPartition)) GroupConsumerOption {
	return func(c *groupConfig) error {
		c.onAssigned = f
		return nil
	}
}

// WithOnRevoked is called with partitions the member gives up, after it
// stopped fetching them and before their offsets are auto-committed and
// they are released. With auto-commit off, commit there the offsets the
// application is done with, with CommitOffsets: it runs on the member's
// own goroutine, maybe while a batch from Poll is still being processed,
// and Commit would commit that batch too. Default none.
func WithOnRevoked(f func(ctx context.Context, partitions []TopicPartition)) GroupConsumerOption {
	return func(c *groupConfig) error {
		c.onRevoked = f
		return nil
	}
}

// WithOnLost is called with partitions the member lost without revoking
// them: the coordinator expired its session (the member did not heartbeat
// within the session timeout), or the member could not hear from the
// coordinator for a whole session timeout and so must assume it. The
// partitions may already belong to another member, and their offsets can
// no longer be committed (the partition leaders refuse the stale epoch).
// Default: the WithOnRevoked callback.
func WithOnLost(f func(ctx context.Context, partitions []TopicPartition)) GroupConsumerOption {
	return func(c *groupConfig) error {
		c.onLost = f
		return nil
	}
}

// WithMemberID sets the member id (unique in the group). Default random.
func WithMemberID(id string) GroupConsumerOption {
	return func(c *groupConfig) error {
		if err := protocol.ValidateMemberID(id); err != nil {
			return fmt.Errorf("clients: %w", err)
		}
		c.memberID = id
		return nil
	}
}

// WithGroupConsumerOptions passes options to the underlying Consumer (fetch
// sizes, long-poll wait). Default none.
func WithGroupConsumerOptions(opts ...ConsumerOption) GroupConsumerOption {
	return func(c *groupConfig) error {
		c.consumerOptions = append(c.consumerOptions, opts...)
		return nil
	}
}

// GroupConsumer consumes topics as a member of a consumer group: the
// brokers assign it partitions (incrementally: it keeps consuming the
// partitions it keeps while others move), it resumes each at the group's
// committed offset (or the reset policy), and it commits the offsets of the
// records Poll returned. Delivery is at least once, in order per partition.
//
// Poll is called from one goroutine at a time; Commit, CommitOffsets,
// CommitAsync, Assigned and Close from any (see Close for what it commits).
// A partition whose fetcher stops on an error Poll returns (a
// *PartitionError: a batch that does not decode, a leader's storage
// error) is fetched again from the member's position on its next
// heartbeat round, while the member owns it.
type GroupConsumer struct {
	client   *Client
	group    string
	topics   []string
	config   groupConfig
	consumer *Consumer

	// commitMu serializes commits (auto-commit, Commit, CommitOffsets and
	// the commit before a revoke): one member's commits of a partition
	// reach its leader one after the other, so an older offset can never
	// land after a newer one and wind the group's offset back.
	commitMu sync.Mutex

	mu        sync.Mutex
	owned     map[TopicPartition]uint64 // partition -> assignment epoch
	positions map[TopicPartition]uint64 // offset after the last record Poll returned
	// processed is positions as of the start of the latest Poll call: the
	// application called Poll again, so it is done with every record an
	// earlier call returned. Auto-commit and the commit before a revoke
	// commit only these, never records it may still be processing.
	processed map[TopicPartition]uint64
	committed map[TopicPartition]uint64 // last offset committed
	// fetchers holds the consumer's fetcher generation of each owned
	// partition's current fetcher (set with the fetcher's start): Poll
	// keeps only records it fetched, not those of a fetcher of a claim
	// lost (and maybe claimed anew) while Poll ran.
	fetchers map[TopicPartition]uint64
	// unpolled holds the partitions whose position is the reset position
	// resolved at assignment, with no record returned since: an explicit
	// CommitOffsets of one sets its position, so Close and auto-commit do
	// not overwrite it with the reset position.
	unpolled map[TopicPartition]bool
	// stalled holds the partitions whose fetcher stopped on an error Poll
	// returned (a non-retriable one: a batch that does not decode, an
	// offset reset that failed), with the assignment epoch then. The
	// member keeps owning them, so run starts their fetchers again at
	// their positions, at most once per heartbeat round.
	stalled map[TopicPartition]uint64
	// heartbeatSeq numbers heartbeats (HeartbeatRequest.Seq). It is taken
	// with the snapshot of owned under mu, so a heartbeat with a higher
	// Seq never reports an older Owned list, and the coordinator can tell
	// a late copy of a heartbeat this member gave up on from a newer one.
	heartbeatSeq uint64
	// heartbeatInterval is the coordinator's last heartbeat interval,
	// which run leaves here when it returns.
	heartbeatInterval time.Duration
	closed            bool

	wake    chan struct{} // capacity 1: heartbeat now
	changes *nats.Subscription
	stop    chan struct{}
	done    chan struct{} // closed when run and autoCommitLoop returned
	// closeDone is closed when the first Close returns.
	closeDone chan struct{}
	// inCallback counts the application's callbacks (OnAssigned,
	// OnRevoked, OnLost) running: a Close from one of them while another
	// Close runs returns at once, since the first waits for the callback.
	inCallback atomic.Int32
	failed     error // why the member cannot rejoin, while it cannot (setFailed)

	// testAfterConsumerPoll, when set (by tests), runs in Poll right after
	// the consumer's Poll returned, before g.mu is taken.
	testAfterConsumerPoll func()
}

// NewGroupConsumer joins group for topics and starts heartbeating. The
// first assignment arrives in the background; Poll returns records as soon
// as partitions are assigned.
func (c *Client) NewGroupConsumer(ctx context.Context, group string, topics []string, opts ...GroupConsumerOption) (*GroupConsumer, error) {
	if err := protocol.ValidateGroupName(group); err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, errors.New("clients: group consumer without topics")
	}
	config := groupConfig{sessionTimeout: 10 * time.Second, autoCommitInterval: 5 * time.Second, commitOnClose: true, resetTo: Earliest()}
	for _, opt := range opts {
		if err := opt(&config); err != nil {
			return nil, err
		}
	}
	if config.memberID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:])
		config.memberID = "member-" + hex.EncodeToString(id[:])
	}
	// Without a reset the fetcher would stop at an out-of-range offset
	// while the member keeps owning the partition, which then never moves
	// nor resumes (a GroupConsumer has no Seek). First, so the caller's
	// own WithOffsetReset wins.
	consumerOptions := append([]ConsumerOption{WithOffsetReset(config.resetTo)}, config.consumerOptions...)
	consumer, err := c.NewConsumer(consumerOptions...)
	if err != nil {
		return nil, err
	}
	g := &GroupConsumer{
		client: c, group: group, topics: slices.Clone(topics), config: config, consumer: consumer,
		owned: map[TopicPartition]uint64{}, positions: map[TopicPartition]uint64{}, processed: map[TopicPartition]uint64{},
		unpolled:  map[TopicPartition]bool{},
		stalled:   map[TopicPartition]uint64{},
		committed: map[TopicPartition]uint64{},
		fetchers:  map[TopicPartition]uint64{},
		wake:      make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), closeDone: make(chan struct{}),
		// Heartbeat numbers start at the wall clock in nanoseconds, so a
		// process that comes back with the same member id (WithMemberID)
		// numbers above every heartbeat of the one before it, whose
		// session the coordinator may still hold.
		heartbeatSeq: uint64(max(time.Now().UnixNano(), 0)),
	}
	// The coordinator announces assignment changes; heartbeat at once then.
	changed, err := c.conn.Subscribe(protocol.SubjectGroupChanged(c.config.prefix, group), func(*nats.Msg) {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		consumer.Close()
		return nil, fmt.Errorf("clients: subscribe to group changes: %w", err)
	}
	g.changes = changed
	reply, err := g.join(ctx)
	if err != nil {
		_ = changed.Unsubscribe()
		consumer.Close()
		return nil, err
	}
	var loops sync.WaitGroup
	loops.Go(func() { g.run(reply) })
	if config.autoCommitInterval > 0 {
		loops.Go(g.autoCommitLoop)
	}
	go func() {
		loops.Wait()
		close(g.done)
	}()
	return g, nil
}

// MemberID is the member's id in the group.
func (g *GroupConsumer) MemberID() string { return g.config.memberID }

// Assigned returns the partitions the member consumes now, sorted.
func (g *GroupConsumer) Assigned() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]TopicPartition, 0, len(g.owned))
	for tp := range g.owned {
		out = append(out, tp)
	}
	sortTopicPartitions(out)
	return out
}

func sortTopicPartitions(s []TopicPartition) {
	slices.SortFunc(s, func(a, b TopicPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition) - int(b.Partition)
	})
}

// Poll returns records of the assigned partitions (see Consumer.Poll).
// Commit and Close commit the offsets of every record Poll returned;
// auto-commit (and the commit before a revoke) only those returned by
// earlier Poll calls, as calling Poll again says the application is done
// with them: a member that fails while processing a batch never has that
// batch committed, and its next owner delivers it again. While the member
// cannot rejoin its group (it expired and the coordinator refuses it for
// good, say because the group's topics differ), Poll returns why.
func (g *GroupConsumer) Poll(ctx context.Context) ([]*Record, error) {
	for {
		g.mu.Lock()
		maps.Copy(g.processed, g.positions)
		failed := g.failed
		g.mu.Unlock()
		if failed != nil {
			return nil, failed
		}
		records, generations, err := g.consumer.pollGenerations(ctx)
		if g.testAfterConsumerPoll != nil {
			g.testAfterConsumerPoll()
		}
		g.mu.Lock()
		g.noteStalledLocked(err)
		kept := records[:0]
		for i, r := range records {
			tp := TopicPartition{r.Topic, r.Partition}
			if generation, ok := g.fetchers[tp]; !ok || generation != generations[i] {
				// Revoked or lost meanwhile: its next owner, or this
				// member's new claim, reads it from the committed offset.
				continue
			}
			g.positions[tp] = max(g.positions[tp], r.Offset+1)
			delete(g.unpolled, tp)
			kept = append(kept, r)
		}
		if g.failed != nil && (err == nil || ctx.Err() != nil) {
			err = g.failed // more telling than a Poll that timed out
		}
		g.mu.Unlock()
		if len(kept) > 0 || err != nil {
			return kept, err
		}
		// Every record was dropped: wait on for records, or ctx's end.
	}
}

// noteStalledLocked marks the owned partitions whose fetcher stopped, as
// the errors of a Poll of the consumer report them (g.mu held).
func (g *GroupConsumer) noteStalledLocked(err error) {
	for tp := range partitionErrors(err) {
		if epoch, ok := g.owned[tp]; ok {
			g.stalled[tp] = epoch
		}
	}
}

// restartStalled starts again the fetchers of owned partitions that
// stopped on an error (noteStalledLocked), at the offset after the last
// record Poll returned: a GroupConsumer has no Seek, and the partition
// would otherwise stay owned by this member and read by no one until the
// group rebalanced. Poll has reported the error; one that persists (a
// batch that never decodes) is reported again each round. Run alone calls
// it, as it alone changes what the member owns; it sends no request (the
// fetcher finds the leader itself), so it never holds up a heartbeat.
func (g *GroupConsumer) restartStalled() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for tp, epoch := range g.stalled {
		if g.owned[tp] != epoch {
			continue
		}
		generation, err := g.consumer.fetchFrom(topicPartition{tp.Topic, tp.Partition}, g.positions[tp])
		if err != nil {
			return // the consumer is closed: the member is closing
		}
		g.fetchers[tp] = generation
		g.client.logger.Info("raftmq: restarted stopped partition", "group", g.group, "partition", tp, "offset", g.positions[tp])
	}
	clear(g.stalled)
}

// setFailed records (or, with nil, clears) why the member cannot rejoin
// its group: a non-retriable refusal (the group's topics differ, say).
// Poll returns it while it holds; the loop keeps trying.
func (g *GroupConsumer) setFailed(err error) {
	if err != nil && retriable(err) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.failed = nil
		return
	}
	if g.failed == nil {
		g.client.logger.Warn("raftmq: group member cannot rejoin", "group", g.group, "member", g.config.memberID, "error", err)
	}
	g.failed = fmt.Errorf("clients: group %s: member %s cannot rejoin: %w", g.group, g.config.memberID, err)
}

// Commit commits the offsets of every record Poll returned (of partitions
// still owned) and waits for the acknowledgement.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	return g.commitPositions(ctx, nil, true)
}

// CommitAsync commits like Commit in the background and calls done (if not
// nil) with the outcome.
func (g *GroupConsumer) CommitAsync(done func(error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.client.config.requestTimeout)
		defer cancel()
		err := g.Commit(ctx)
		if done != nil {
			done(err)
		}
	}()
}

// CommitOffsets commits explicit offsets (each the next offset to consume)
// of owned partitions. A partition the member does not own fails with
// protocol.CodeStaleEpoch.
func (g *GroupConsumer) CommitOffsets(ctx context.Context, offsets map[TopicPartition]uint64) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	return g.commitOffsetsLocked(ctx, offsets)
}

// commitOffsetsLocked is CommitOffsets; g.commitMu is held.
func (g *GroupConsumer) commitOffsetsLocked(ctx context.Context, offsets map[TopicPartition]uint64) error {
	g.mu.Lock()
	var commits []protocol.PartitionOffset
	var errs []error
	for tp, offset := range offsets {
		epoch, ok := g.owned[tp]
		if !ok {
			errs = append(errs, &PartitionError{Topic: tp.Topic, Partition: tp.Partition,
				Err: protocol.Errorf(protocol.CodeStaleEpoch, "partition not owned by member %s", g.config.memberID)})
			continue
		}
		commits = append(commits, protocol.PartitionOffset{Topic: tp.Topic, Partition: tp.Partition, Offset: offset, Epoch: epoch})
	}
	g.mu.Unlock()
	if len(commits) > 0 {
		if err := g.client.CommitOffsets(ctx, g.group, g.config.memberID, commits); err != nil {
			errs = append(errs, err)
		} else {
			g.mu.Lock()
			for _, c := range commits {
				tp := TopicPartition{c.Topic, c.Partition}
				if g.owned[tp] != c.Epoch {
					continue // lost or granted anew meanwhile: its claim read the offset
				}
				g.committed[tp] = c.Offset
				if g.unpolled[tp] {
					g.positions[tp], g.processed[tp] = c.Offset, c.Offset
					delete(g.unpolled, tp)
				}
			}
			g.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// commitPositions commits the positions of only (all owned when nil) that
// moved since the last commit: of every record Poll returned with
// returned, else of the records the application is done with.
func (g *GroupConsumer) commitPositions(ctx context.Context, only []TopicPartition, returned bool) error {
	// The positions are read under commitMu, after any commit in flight
	// finished, so g.committed is current and the offsets sent are the
	// newest.
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	offsets := map[TopicPartition]uint64{}
	positions := g.processed
	if returned {
		positions = g.positions
	}
	for tp, position := range positions {
		if only != nil && !slices.Contains(only, tp) {
			continue
		}
		committed, ok := g.committed[tp]
		// The processed positions trail the returned ones: never commit
		// one below what a Commit of the returned ones already did.
		if !ok || committed != position && (returned || position > committed) {
			offsets[tp] = position
		}
	}
	g.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	return g.commitOffsetsLocked(ctx, offsets)
}

// Close stops consuming, commits the offsets of every record Poll returned
// (WithCommitOnClose; the member goes on heartbeating meanwhile, so a slow
// commit does not get it expired) and leaves the group, so its partitions
// move at once.
// A Poll waiting for records returns ErrClosed. Close does not close the
// Client.
//
// Call Close once the application is done with the records of the last
// Poll, typically after its poll loop ends. Called from another goroutine
// (a signal handler) while a batch is still being processed, Close commits
// that batch too, and its records are lost if the process exits before it
// finishes them. To close from elsewhere, use WithCommitOnClose(false) and
// commit with CommitOffsets what the application is done with. A Close
// while another runs waits for it (or until its own ctx ends) and returns
// nil once it did, except while a callback runs (it may be the caller,
// which the first Close waits for): it then returns nil at once. Close
// heartbeats while it commits, until its ctx ends.
func (g *GroupConsumer) Close(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		if g.inCallback.Load() > 0 {
			// Maybe from the callback itself, on the goroutine the
			// first Close waits for: waiting would never end.
			return nil
		}
		select {
		case <-g.closeDone:
			return nil
		default:
		}
		select {
		case <-g.closeDone:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("clients: close: %w", ctx.Err())
		}
	}
	g.closed = true
	g.mu.Unlock()
	defer close(g.closeDone)
	close(g.stop)
	<-g.done
	_ = g.changes.Unsubscribe()
	var errs []error
	if g.config.commitOnClose {
		// The member still owns its partitions until it leaves: a commit
		// slower than the session timeout must not get it expired, its
		// partitions moved and the commit fenced by their next owner.
		g.mu.Lock()
		interval := g.heartbeatInterval
		g.mu.Unlock()
		// Not past ctx: then the member expires as it would have.
		stopKeeping := g.keepSession(ctx, interval, nil)
		errs = append(errs, g.Commit(ctx))
		stopKeeping()
	}
	g.consumer.Close()
	var reply protocol.DeleteGroupReply // any reply with an error field
	errs = append(errs, g.client.groupAdmin(ctx, protocol.AdminGroupLeave,
		protocol.LeaveGroupRequest{Version: protocol.APIVersion, Group: g.group, Member: g.config.memberID}, &reply,
		func() *protocol.Error { return reply.Error }))
	return errors.Join(errs...)
}

func (g *GroupConsumer) join(ctx context.Context) (protocol.HeartbeatReply, error) {
	var reply protocol.HeartbeatReply
	err := g.client.groupAdmin(ctx, protocol.AdminGroupJoin, protocol.JoinGroupRequest{
		Version: protocol.APIVersion, Group: g.group, Member: g.config.memberID, Topics: g.topics,
		SessionTimeoutMs: g.config.sessionTimeout.Milliseconds(),
	}, &reply, func() *protocol.Error { return reply.Error })
	if err != nil {
		return reply, fmt.Errorf("clients: join group %s: %w", g.group, err)
	}
	return reply, nil
}

func (g *GroupConsumer) heartbeat(ctx context.Context) (protocol.HeartbeatReply, error) {
	return g.heartbeatOwning(ctx, nil)
}

// heartbeatOwning is heartbeat listing claiming as owned too (partitions
// being claimed: the coordinator must not move them while the member may
// start consuming them).
func (g *GroupConsumer) heartbeatOwning(ctx context.Context, claiming []protocol.GroupPartition) (protocol.HeartbeatReply, error) {
	g.mu.Lock()
	owned := make([]protocol.GroupPartition, 0, len(g.owned)+len(claiming))
	for tp, epoch := range g.owned {
		owned = append(owned, protocol.GroupPartition{Topic: tp.Topic, Partition: tp.Partition, Epoch: epoch})
	}
	for _, gp := range claiming {
		if _, ok := g.owned[TopicPartition{gp.Topic, gp.Partition}]; !ok {
			owned = append(owned, gp)
		}
	}
	g.heartbeatSeq++
	seq := g.heartbeatSeq
	g.mu.Unlock()
	var reply protocol.HeartbeatReply
	err := g.client.adminRequest(ctx, protocol.AdminGroupHeartbeat, protocol.HeartbeatRequest{
		Version: protocol.APIVersion, Group: g.group, Member: g.config.memberID, Owned: owned, Seq: seq}, &reply)
	if err == nil && reply.Error != nil {
		err = reply.Error
	}
	return reply, err
}

// autoCommitLoop commits the processed positions every auto-commit
// interval. It runs apart from run so a slow commit never delays a
// heartbeat: a member busy committing must not miss its session and lose
// partitions it is still consuming.
func (g *GroupConsumer) autoCommitLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-g.stop
		cancel()
	}()
	ticker := time.NewTicker(g.config.autoCommitInterval)
	defer ticker.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-ticker.C:
		}
		commitCtx, commitCancel := context.WithTimeout(ctx, g.client.config.requestTimeout)
		if err := g.commitPositions(commitCtx, nil, false); err != nil && ctx.Err() == nil {
			g.client.logger.Warn("raftmq: auto-commit failed", "group", g.group, "error", err)
		}
		commitCancel()
	}
}

// run is the member's background loop: heartbeats and assignment changes
// (auto-commits run in autoCommitLoop). It alone changes which partitions
// the member owns.
func (g *GroupConsumer) run(first protocol.HeartbeatReply) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-g.stop
		cancel()
	}()
	interval := time.Duration(max(first.HeartbeatIntervalMs, 10)) * time.Millisecond
	defer func() {
		g.mu.Lock()
		g.heartbeatInterval = interval // for Close's commit (keepSession)
		g.mu.Unlock()
	}()
	reply, haveReply := first, true
	// lastHeard is when the last heartbeat the coordinator answered was
	// sent: the coordinator heard the member at or after it, so its
	// session runs at least until lastHeard plus the session timeout.
	lastHeard := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if haveReply {
			released, heard := g.reconcileKeepingSession(ctx, reply, interval)
			if heard.After(lastHeard) {
				lastHeard = heard
			}
			if released {
				// Released partitions: tell the coordinator now.
				select {
				case g.wake <- struct{}{}:
				default:
				}
			}
			haveReply = false
			timer.Reset(interval)
		}
		g.restartStalled()
		select {
		case <-g.stop:
			return
		case <-g.wake:
		case <-timer.C:
		}
		// A heartbeat waits one interval for its answer and a failed one is
		// sent again after a quarter interval, so one lost in a coordinator
		// failover (the old coordinator drops what it had not read) costs
		// well under the session timeout (three intervals).
		hbCtx, hbCancel := context.WithTimeout(ctx, interval)
		var err error
		sent := time.Now()
		reply, err = g.heartbeat(hbCtx)
		hbCancel()
		switch {
		case err == nil:
			lastHeard = sent
			haveReply = true
			interval = time.Duration(max(reply.HeartbeatIntervalMs, 10)) * time.Millisecond
		case errors.Is(err, protocol.CodeUnknownMember):
			// Expired: every partition is gone; join again.
			g.dropAll(ctx)
			joinSent := time.Now()
			reply, err = g.join(ctx)
			g.setFailed(err)
			if err == nil {
				// The coordinator heard the join: the new session
				// runs from then, not from the last heartbeat of the
				// expired one.
				lastHeard = joinSent
				haveReply = true
				interval = time.Duration(max(reply.HeartbeatIntervalMs, 10)) * time.Millisecond
			} else {
				timer.Reset(interval)
			}
		default:
			if ctx.Err() == nil {
				g.client.logger.Debug("raftmq: heartbeat failed", "group", g.group, "error", err)
				if time.Since(lastHeard) >= g.config.sessionTimeout {
					// The coordinator may have expired the session and
					// moved the partitions: stop consuming them now
					// rather than when it answers again. A later answer
					// that still lists them claims them again.
					g.dropAll(ctx)
				}
			}
			timer.Reset(max(interval/4, 10*time.Millisecond))
		}
	}
}

// reconcileKeepingSession runs reconcile while another goroutine goes on
// heartbeating every interval, so a reconcile slower than the session
// timeout (claims at busy partition leaders, the application's callbacks,
// the commit before a revoke) does not get a working member expired, its
// partitions moved and, once it joins again, the same slow reconcile
// repeated. Those heartbeats list the partitions owned at the time
// (reconcile removes a revoked one only after its commit) and every
// partition of the assignment being reconciled, claimed yet or not: the
// coordinator releases a partition it moves elsewhere once a member stops
// listing it, and one being claimed may be consumed as soon as the claim
// succeeds. Their replies are not acted on; run's next heartbeat is. It returns reconcile's result and when the last
// of those heartbeats the coordinator answered was sent (zero if none).
func (g *GroupConsumer) reconcileKeepingSession(ctx context.Context, reply protocol.HeartbeatReply, interval time.Duration) (released bool, heard time.Time) {
	stopKeeping := g.keepSession(ctx, interval, reply.Assigned)
	released = g.reconcile(ctx, reply)
	return released, stopKeeping()
}

// keepSession heartbeats every interval, listing the partitions owned at
// the time and claiming, until ctx ends or the returned stop is called,
// while the caller does something that may outlast the session timeout.
// The replies are not acted on. stop returns when the last heartbeat the
// coordinator answered was sent (zero if none).
func (g *GroupConsumer) keepSession(ctx context.Context, interval time.Duration, claiming []protocol.GroupPartition) (stop func() time.Time) {
	keepCtx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan time.Time, 1)
	go func() {
		var last time.Time
		defer func() { kept <- last }()
		timer := time.NewTimer(interval)
		defer timer.Stop()
		for {
			select {
			case <-keepCtx.Done():
				return
			case <-timer.C:
			}
			hbCtx, hbCancel := context.WithTimeout(keepCtx, interval)
			sent := time.Now()
			_, err := g.heartbeatOwning(hbCtx, claiming)
			hbCancel()
			if err == nil {
				last = sent
			}
			timer.Reset(interval)
		}
	}()
	return func() time.Time {
		stopKeeping()
		return <-kept
	}
}

// reconcile applies an assignment: it revokes (stop, callback, commit,
// release) and starts newly assigned partitions at their committed offsets.
// It reports whether partitions were released.
func (g *GroupConsumer) reconcile(ctx context.Context, reply protocol.HeartbeatReply) bool {
	keep := map[TopicPartition]uint64{}
	for _, gp := range reply.Assigned {
		keep[TopicPartition{gp.Topic, gp.Partition}] = gp.Epoch
	}
	g.mu.Lock()
	var revoked []TopicPartition
	for tp := range g.owned {
		if _, ok := keep[tp]; !ok {
			revoked = append(revoked, tp)
		}
	}
	var added []protocol.GroupPartition
	var renewed []TopicPartition
	for tp, epoch := range keep {
		current, ok := g.owned[tp]
		if ok && current != epoch {
			// Granted again with a new epoch: the coordinator freed the
			// partition meanwhile (this member's heartbeat stopped listing
			// it, or its topic was recreated), and another member may have
			// claimed it and committed since. The member's position and
			// epoch are stale: it loses the partition and claims it anew,
			// which fences the other member and reads the committed offset.
			renewed = append(renewed, tp)
		}
		if !ok || current != epoch {
			added = append(added, protocol.GroupPartition{Topic: tp.Topic, Partition: tp.Partition, Epoch: epoch})
		}
	}
	g.mu.Unlock()
	if len(revoked) > 0 {
		g.revoke(ctx, revoked)
	}
	if len(renewed) > 0 {
		g.lose(ctx, renewed)
	}
	if len(added) > 0 {
		g.assign(ctx, added)
	}
	return len(revoked) > 0
}

func (g *GroupConsumer) revoke(ctx context.Context, partitions []TopicPartition) {
	sortTopicPartitions(partitions)
	for _, tp := range partitions {
		g.consumer.Unassign(tp.Topic, tp.Partition)
	}
	if g.config.onRevoked != nil {
		g.callback(ctx, g.config.onRevoked, partitions)
	}
	if g.config.autoCommitInterval > 0 {
		commitCtx, cancel := context.WithTimeout(ctx, g.client.config.requestTimeout)
		if err := g.commitPositions(commitCtx, partitions, false); err != nil && ctx.Err() == nil {
			g.client.logger.Warn("raftmq: commit before revoke failed", "group", g.group, "error", err)
		}
		cancel()
	}
	g.mu.Lock()
	for _, tp := range partitions {
		g.forgetLocked(tp)
	}
	g.mu.Unlock()
}

// forgetLocked drops what the member holds of a partition (g.mu held).
func (g *GroupConsumer) forgetLocked(tp TopicPartition) {
	delete(g.owned, tp)
	delete(g.positions, tp)
	delete(g.processed, tp)
	delete(g.committed, tp)
	delete(g.unpolled, tp)
	delete(g.stalled, tp)
	delete(g.fetchers, tp)
}

// dropAll forgets every partition without committing (the member's
// epochs are stale once it expired) and reports them lost.
func (g *GroupConsumer) dropAll(ctx context.Context) {
	g.mu.Lock()
	lost := make([]TopicPartition, 0, len(g.owned))
	for tp := range g.owned {
		lost = append(lost, tp)
	}
	g.owned, g.positions, g.processed, g.committed = map[TopicPartition]uint64{}, map[TopicPartition]uint64{}, map[TopicPartition]uint64{}, map[TopicPartition]uint64{}
	g.unpolled, g.stalled = map[TopicPartition]bool{}, map[TopicPartition]uint64{}
	g.fetchers = map[TopicPartition]uint64{}
	g.mu.Unlock()
	g.reportLost(ctx, lost)
}

// lose forgets partitions whose epoch is stale without committing, and
// reports them lost.
func (g *GroupConsumer) lose(ctx context.Context, lost []TopicPartition) {
	g.mu.Lock()
	for _, tp := range lost {
		g.forgetLocked(tp)
	}
	g.mu.Unlock()
	g.reportLost(ctx, lost)
}

// reportLost stops fetching forgotten partitions and calls OnLost (or
// OnRevoked without it) with them.
func (g *GroupConsumer) reportLost(ctx context.Context, lost []TopicPartition) {
	for _, tp := range lost {
		g.consumer.Unassign(tp.Topic, tp.Partition)
	}
	if len(lost) == 0 {
		return
	}
	sortTopicPartitions(lost)
	switch {
	case g.config.onLost != nil:
		g.callback(ctx, g.config.onLost, lost)
	case g.config.onRevoked != nil:
		g.callback(ctx, g.config.onRevoked, lost)
	}
}

// assign claims new partitions at their leaders (fencing the previous
// owner) and starts fetching at the committed offset or the reset policy.
func (g *GroupConsumer) assign(ctx context.Context, partitions []protocol.GroupPartition) {
	sortGroupPartitions(partitions)
	claimCtx, cancel := context.WithTimeout(ctx, g.client.config.requestTimeout)
	defer cancel()
	committed, err := g.client.fetchCommitted(claimCtx, g.group, g.config.memberID, true, partitions)
	var started []TopicPartition
	for i, gp := range partitions {
		tp := TopicPartition{gp.Topic, gp.Partition}
		c := committed[i]
		if c.Error != nil || (err != nil && c.Topic == "") {
			// Not claimed (a stale epoch, or no leader in time): leave it;
			// the next heartbeat still lists it and we try again.
			continue
		}
		start, reset := c.Offset, false
		if !c.Committed || c.Offset < c.LogStartOffset {
			// The reset position, resolved with the partition's ends the
			// claim read at the leader and kept as this member's
			// position: the next commit (auto, before a revoke, at Close)
			// writes it, so a member that owned the partition without
			// polling its records hands the next owner this offset, not
			// a reset resolved again later (Latest would skip what was
			// produced meanwhile).
			start, reset = c.LogStartOffset, true
			if g.config.resetTo.kind == positionLatest {
				start = c.HighWatermark
			}
		}
		// Owned, with its fetcher's generation, as its fetcher starts: a
		// Poll running meanwhile keeps only records of the owned
		// partitions' current fetchers, and would drop the first ones
		// while the consumer's position passes them.
		g.mu.Lock()
		g.owned[tp] = gp.Epoch
		if c.Committed {
			g.committed[tp] = c.Offset
		}
		g.positions[tp] = start
		g.processed[tp] = start
		if reset {
			g.unpolled[tp] = true
		}
		// The claim read every offset the start needs: no request here
		// (a Seek's list-offsets, one partition after the other within
		// the claim's timeout, dropped the partitions past it). Under
		// g.mu, so Poll knows the fetcher's generation by the time it
		// can see the fetcher's records.
		generation, err := g.consumer.fetchFrom(topicPartition{gp.Topic, gp.Partition}, start)
		if err != nil {
			// The consumer is closed: the member is closing.
			g.forgetLocked(tp)
			g.mu.Unlock()
			continue
		}
		g.fetchers[tp] = generation
		g.mu.Unlock()
		started = append(started, tp)
	}
	if len(started) > 0 && g.config.onAssigned != nil {
		g.callback(ctx, g.config.onAssigned, started)
	}
}

// callback calls the application's f with partitions, counted in
// inCallback while it runs.
func (g *GroupConsumer) callback(ctx context.Context, f func(context.Context, []TopicPartition), partitions []TopicPartition) {
	g.inCallback.Add(1)
	defer g.inCallback.Add(-1)
	f(ctx, partitions)
}

func sortGroupPartitions(s []protocol.GroupPartition) {
	slices.SortFunc(s, func(a, b protocol.GroupPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition) - int(b.Partition)
	})
}
