package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/raft"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/transport"
)

// Broker is one raftmq broker. Start it with Start; stop it with Close.
type Broker struct {
	cfg     Config
	prefix  string
	logger  *slog.Logger
	metrics *brokerMetrics

	lock     io.Closer
	store    *stateStore
	embedded *transport.EmbeddedServer
	nc       *nats.Conn
	// peerNC carries the traffic between brokers (b.peers, the metadata
	// broadcast, status reports): on an in-process connection to this
	// process's NATS server, a second connection in the server's peer
	// account (transport.PeerAccount), out of clients' reach; else nc
	// itself.
	peerNC     *nats.Conn
	peers      *transport.Transport
	host       *raft.Host
	controller *controllerReplica // nil unless this is a bootstrap broker

	maxBatchBytes    int
	roundRobin       atomic.Uint64
	retentionRunning atomic.Bool
	// beforeSnapshotCreate, when set (by tests), runs in snapshotAtIndex
	// just before the snapshot file is created.
	beforeSnapshotCreate atomic.Pointer[func(*partitionReplica)]
	controllerFailed     atomic.Bool // the controller's failure was logged

	// logLimit holds when each logLimited key was last logged.
	logLimit struct {
		sync.Mutex
		last map[string]time.Time
	}

	mu         sync.RWMutex
	metadata   *clusterMetadata
	partitions map[topicPartition]*partitionReplica
	groups     map[uint64]*partitionReplica
	sessions   *groupSessions          // consumer group sessions, on the coordinator
	reports    map[uint64]brokerReport // latest status of every broker, this one included
	membership membershipDriver        // reassignment steps running (membership.go)
	closing    bool
	// otherAccount holds the brokers heard reporting in the client account
	// while this one is in the peer account (handleOtherAccountReport):
	// each is logged once.
	otherAccount map[uint64]bool
	// failed holds the replicas stopped after an error, until they ran
	// again for a while (failures.go).
	failed map[uint64]*replicaFailure
	// metadataKnown is closed when the first metadata is adopted.
	metadataKnown chan struct{}

	subs       []*nats.Subscription
	requests   sync.WaitGroup // request goroutines
	reconcile  chan struct{}  // capacity 1: the metadata changed
	stop       chan struct{}
	loopDone   chan struct{}
	httpServer *http.Server
	httpAddr   string
	closeOnce  sync.Once
	closeErr   error
}

type topicPartition struct {
	topic     string
	partition uint32
}

type brokerReport struct {
	seen   time.Time
	status protocol.BrokerStatus
}

// Start opens the broker's data directory, connects to NATS (starting the
// embedded server when configured), starts the controller replica on
// bootstrap brokers and serves the client API. Partition replicas start as
// soon as the cluster metadata is known. ctx bounds the start only.
func Start(ctx context.Context, cfg Config) (_ *Broker, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		cfg:           cfg,
		prefix:        cfg.prefix(),
		logger:        logger.With("broker", cfg.ID),
		metadata:      &clusterMetadata{},
		partitions:    map[topicPartition]*partitionReplica{},
		groups:        map[uint64]*partitionReplica{},
		sessions:      newGroupSessions(),
		reports:       map[uint64]brokerReport{},
		otherAccount:  map[uint64]bool{},
		failed:        map[uint64]*replicaFailure{},
		reconcile:     make(chan struct{}, 1),
		metadataKnown: make(chan struct{}),
		stop:          make(chan struct{}),
		loopDone:      make(chan struct{}),
	}
	defer func() {
		if err != nil {
			b.release()
		}
	}()
	if b.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if b.store, err = openStateStore(filepath.Join(cfg.DataDir, "state")); err != nil {
		return nil, err
	}
	if b.metrics, err = newBrokerMetrics(cfg.Registerer, b); err != nil {
		return nil, err
	}
	if err = b.connect(); err != nil {
		return nil, err
	}
	if b.peers, err = transport.New(b.peerNC, transport.Config{
		ClusterName: b.prefix, NodeID: cfg.ID, Registerer: cfg.Registerer, Logger: b.logger,
	}); err != nil {
		return nil, fmt.Errorf("broker: peer transport: %w", err)
	}
	// One batch must fit in one produce request and one AppendEntries frame.
	const frameOverhead = 1024
	b.maxBatchBytes = min(cfg.MaxBatchBytes, b.peers.MaxFrameSize()-frameOverhead, int(b.nc.MaxPayload())-frameOverhead)
	if b.maxBatchBytes < cfg.MaxBatchBytes {
		// The default stands for "as large as one NATS message allows", so
		// lowering it is the documented case, not worth a warning on every
		// start (three of them opened `raftmq dev`); a value the operator
		// chose is.
		level := slog.LevelWarn
		if cfg.MaxBatchBytes == DefaultConfig().MaxBatchBytes {
			level = slog.LevelInfo
		}
		b.logger.Log(ctx, level, "max batch bytes lowered to fit the NATS max payload", "configured", cfg.MaxBatchBytes, "effective", b.maxBatchBytes)
	}
	if b.host, err = raft.NewHost(raft.HostConfig{NodeID: cfg.ID, Send: b.sendRaft, Logger: b.logger}); err != nil {
		return nil, fmt.Errorf("broker: raft host: %w", err)
	}
	b.peers.SetHandler(b.receiveRaft)
	// Every broker runs a controller replica: a bootstrap broker as a voter
	// of the bootstrap configuration, any other outside the configuration
	// until AdminAddController adds it (membership.go).
	if err = b.startController(); err != nil {
		return nil, err
	}
	if err = b.subscribe(); err != nil {
		return nil, err
	}
	if cfg.MetricsAddr != "" {
		if err = b.serveHTTP(cfg.MetricsAddr); err != nil {
			return nil, err
		}
	}
	go b.run()
	b.logger.Info("broker started", "data", cfg.DataDir, "nats", b.nc.ConnectedUrlRedacted(), "bootstrap", cfg.Bootstrap)
	return b, ctx.Err()
}

// connect starts the embedded NATS server when configured and connects.
func (b *Broker) connect() error {
	connectCfg := b.cfg.NATS.Connect
	if connectCfg.Name == "" {
		connectCfg.Name = fmt.Sprintf("raftmq-broker-%d", b.cfg.ID)
	}
	if connectCfg.Logger == nil {
		connectCfg.Logger = b.logger
	}
	if embedded := b.cfg.NATS.Embedded; embedded != nil {
		serverCfg := *embedded
		if serverCfg.ServerName == "" {
			serverCfg.ServerName = fmt.Sprintf("raftmq-%d", b.cfg.ID)
		}
		server, err := transport.StartEmbedded(serverCfg)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		b.embedded = server
		// The broker's own server is in this process: connect through an
		// in-memory pipe, not TCP loopback. Peer traffic then crosses one
		// socket (the route between servers) each way instead of three,
		// and the broker's reads and writes to its server cost no
		// syscalls. The URL only names the server (logs, reconnects).
		connectCfg.URLs = []string{server.ClientURL()}
		connectCfg.InProcess = server
	}
	nc, err := transport.Connect(connectCfg)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.nc, b.peerNC = nc, nc
	if connectCfg.InProcess == nil {
		// Over TCP (an external NATS system, or the development cluster's
		// servers reached over loopback) Raft shares the connection and its
		// account; restricting peer subjects is NATS authorization's job
		// (README, Security).
		return nil
	}
	peerCfg := connectCfg
	peerCfg.Name += "-peers"
	peerCfg.PeerAccount = true
	peerCfg.User, peerCfg.Password, peerCfg.Token, peerCfg.CredentialsFile = "", "", "", ""
	if b.peerNC, err = transport.Connect(peerCfg); err != nil {
		return fmt.Errorf("broker: peer connection: %w", err)
	}
	return nil
}

func (b *Broker) groupConfig(groupID uint64, voters []uint64, log raft.LogStorage, sm raft.StateMachine, applied uint64) raft.GroupConfig {
	gc := raft.DefaultGroupConfig()
	gc.GroupID = groupID
	gc.Voters = voters
	gc.Log = log
	gc.Stable = &hardStateStorage{store: b.store, groupID: groupID}
	gc.StateMachine = sm
	gc.Applied = applied
	gc.ElectionTimeout = b.cfg.ElectionTimeout
	gc.HeartbeatInterval = b.cfg.HeartbeatInterval
	// MaxAppendBytes bounds an AppendEntries' entries as encoded and a
	// snapshot chunk; the message adds at most protocol.MaxRaftHeaderSize,
	// well inside what is left of a frame (maxBatchBytes leaves 1 KiB).
	gc.MaxAppendBytes = uint64(max(b.peers.MaxFrameSize()-4096, b.maxBatchBytes))
	return gc
}

// campaignsEarly reports whether this broker's replica of a partition with
// the given replicas campaigns early
// (raft.GroupConfig.CampaignEarly): the preferred leader's (the first
// replica) does, so its election timer ([ET/2, ET)) runs out before any
// other replica's ([ET, 2*ET)) when they start together, and a new
// partition is first led by it, as the assignment intended, instead of by
// whichever replica's timer fired first and then handed over by
// balanceLeaders up to balanceIntervals status intervals later (a transfer
// that refuses produce requests meanwhile). After a leader fails the
// preferred replica again campaigns first. Not where the broker's Raft
// timings (which groupConfig gives every group) do not allow it
// (raft.GroupConfig.CanCampaignEarly).
func (b *Broker) campaignsEarly(replicas []uint64) bool {
	timings := raft.GroupConfig{ElectionTimeout: b.cfg.ElectionTimeout, HeartbeatInterval: b.cfg.HeartbeatInterval}
	return len(replicas) > 1 && replicas[0] == b.cfg.ID && timings.CanCampaignEarly()
}

// followPreferredLeader keeps a running replica's CampaignEarly in step
// with its partition's replica list: a reassignment that only reorders the
// replicas moves the preferred leader without restarting any replica.
func (b *Broker) followPreferredLeader(r *partitionReplica, replicas []uint64) {
	early := b.campaignsEarly(replicas) && !b.unstable(r.groupID)
	if early == r.group.CampaignsEarly() {
		return
	}
	if err := r.group.SetCampaignEarly(early); err != nil {
		b.logger.Warn("cannot change when a replica campaigns", "topic", r.topic, "partition", r.partition, "err", err)
	}
}

func (b *Broker) startController() error {
	dir := filepath.Join(b.cfg.DataDir, "controller")
	log, err := openLog(b.cfg.FS, dir, b.cfg.Log)
	if err != nil {
		return err
	}
	// The state machine's metadata is adopted only by the controller leader
	// once it applied its whole log (run, createTopic): a replica replaying
	// its log after a restart holds a past state, not the current one.
	state := newControllerStateMachine(b.cfg.Bootstrap, nil)
	voters, err := b.controllerStartVoters(log) // membership.go
	if err != nil {
		log.Close()
		return err
	}
	group, err := b.host.AddGroup(b.groupConfig(controllerGroupID, voters, timedLog{log, b.metrics.fsyncLatency}, state, 0))
	if err != nil {
		log.Close()
		return fmt.Errorf("broker: start controller: %w", err)
	}
	b.controller = &controllerReplica{log: log, group: group, state: state}
	return nil
}

func openLog(fs vfs.FS, dir string, opts segmentlog.Options) (*segmentlog.Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if fs == nil {
		fs = vfs.Default
	}
	log, err := segmentlog.Open(fs, dir, opts)
	if err != nil {
		return nil, fmt.Errorf("broker: open log %s: %w", dir, err)
	}
	return log, nil
}

// sendRaft is the raft host's outbound path: each message is encoded
// straight into the transport's outgoing NATS message (no copy of the
// entries in between).
func (b *Broker) sendRaft(msgs []protocol.RaftMessage) {
	for i := range msgs {
		m := &msgs[i]
		err := b.peers.SendAppend(m.To, protocol.RaftMessageSize(m), func(dst []byte) []byte {
			return protocol.AppendRaftMessage(dst, m)
		})
		switch {
		case errors.Is(err, transport.ErrFrameTooLarge):
			// Not a passing failure: Raft sends the same message again
			// and the follower never catches up (a message of several
			// entries must fit, see groupConfig; a single entry fits
			// by maxBatchBytes).
			b.logLimitedAt(slog.LevelWarn, "raft-frame-too-large", "raft message too large for a peer frame, dropped",
				"to", m.To, "group", m.GroupID, "type", m.Type, "entries", len(m.Entries), "err", err)
		case err != nil:
			b.logger.Debug("raft send failed", "to", m.To, "group", m.GroupID, "err", err)
		}
	}
}

// receiveRaft is the transport's inbound path.
func (b *Broker) receiveRaft(from uint64, frame []byte) {
	m, err := protocol.DecodeRaftMessage(frame)
	if err != nil {
		b.logger.Warn("dropping undecodable raft frame", "from", from, "err", err)
		return
	}
	b.host.Step(m)
}

// adoptMetadata installs metadata newer than what the broker holds.
func (b *Broker) adoptMetadata(m *clusterMetadata) {
	b.mu.Lock()
	if m.Version <= b.metadata.Version {
		b.mu.Unlock()
		return
	}
	if b.metadata.Version == 0 {
		close(b.metadataKnown)
	}
	b.metadata = m
	b.mu.Unlock()
	select {
	case b.reconcile <- struct{}{}:
	default:
	}
}

func (b *Broker) currentMetadata() *clusterMetadata {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.metadata
}

// run is the broker's background loop: it starts and stops replicas when the
// metadata changes, publishes metadata (on the controller leader) and runs
// the periodic checks, and runs statusLoop beside it until both end. It
// alone creates and removes replicas.
func (b *Broker) run() {
	defer close(b.loopDone)
	statusDone := make(chan struct{})
	go b.statusLoop(statusDone)
	defer func() { <-statusDone }()
	tick := time.NewTicker(b.tickInterval())
	defer tick.Stop()
	var lastMetadata, lastRegister, lastBalance, lastRetention time.Time
	var publishedVersion uint64
	for {
		select {
		case <-b.stop:
			return
		case <-b.reconcile:
			b.reconcileReplicas()
		case now := <-tick.C:
			if b.controllerCaughtUp() {
				m := b.controller.state.current()
				b.adoptMetadata(m)
				if m.Version != publishedVersion || now.Sub(lastMetadata) >= b.cfg.StatusInterval {
					b.publishMetadata(m)
					publishedVersion, lastMetadata = m.Version, now
				}
			}
			if _, notCoordinator := b.coordinatorCheck(); notCoordinator == nil {
				b.expireMembers(now)
			}
			if now.Sub(lastRegister) >= b.cfg.StatusInterval {
				lastRegister = now
				b.registerIfNeeded()
			}
			b.superviseReplicas(now)
			b.driveReassignments()
			if now.Sub(lastRetention) >= b.cfg.Retention.CheckInterval && b.retentionRunning.CompareAndSwap(false, true) {
				lastRetention = now
				if b.track() {
					go func() {
						defer b.requests.Done()
						defer b.retentionRunning.Store(false)
						b.runRetention(now)
					}()
				} else {
					b.retentionRunning.Store(false)
				}
			}
			if now.Sub(lastBalance) >= balanceIntervals*b.cfg.StatusInterval {
				lastBalance = now
				b.balanceLeaders()
			}
		}
	}
}

// statusLoop publishes this broker's status every StatusInterval, and at
// once when the leadership it reports changes, until b.stop closes; then
// it closes done. It runs beside run, not in it: the other brokers count
// this one alive while its reports keep arriving (aliveBrokers), and run
// can spend seconds starting or stopping replicas (reconcileReplicas), during
// which a broker whose reports stopped would be counted dead.
func (b *Broker) statusLoop(done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(b.tickInterval())
	defer tick.Stop()
	var lastStatus time.Time
	var lastLeadership string
	for {
		select {
		case <-b.stop:
			return
		case now := <-tick.C:
			status := b.localStatus()
			leadership := leadershipKey(&status)
			if leadership != lastLeadership || now.Sub(lastStatus) >= b.cfg.StatusInterval {
				b.publishStatus(&status)
				lastStatus, lastLeadership = now, leadership
			}
		}
	}
}

// tickInterval is how often run and statusLoop look at what is due: the
// status interval, at most 100 ms, so a leadership change is reported
// within 100 ms.
func (b *Broker) tickInterval() time.Duration {
	return min(b.cfg.StatusInterval, 100*time.Millisecond)
}

// balanceIntervals is how many status intervals pass between checks that
// partitions are led by their preferred leaders.
const balanceIntervals = 5

// balanceLeaders hands each partition this broker leads but is not the
// preferred leader of (its first replica) back to the preferred leader
// when that broker is alive and runs the replica, so leadership spreads
// the way the assignment intended after failovers.
func (b *Broker) balanceLeaders() {
	b.mu.RLock()
	type move struct {
		r         *partitionReplica
		preferred uint64
	}
	var moves []move
	deadline := b.silenceDeadline()
	for _, r := range b.groups {
		preferred := b.replicasLocked(r)[0]
		if preferred == b.cfg.ID {
			continue
		}
		report, ok := b.reports[preferred]
		if !ok || report.seen.Before(deadline) || !report.status.Ready {
			continue
		}
		if !slices.ContainsFunc(report.status.Partitions, func(p protocol.PartitionStatus) bool { return p.GroupID == r.groupID }) {
			continue
		}
		if slices.Contains(report.status.UnstableReplicas, r.groupID) {
			continue // its replica failed lately (failures.go)
		}
		moves = append(moves, move{r, preferred})
	}
	closing := b.closing
	b.mu.RUnlock()
	if closing {
		return
	}
	for _, m := range moves {
		r, preferred := m.r, m.preferred
		if r.group.Status().Role != raft.RoleLeader || !b.track() {
			continue
		}
		go func() {
			defer b.requests.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*b.cfg.ElectionTimeout)
			defer cancel()
			if err := r.group.TransferLeadership(ctx, preferred); err != nil {
				b.logger.Debug("leadership rebalance failed", "topic", r.topic, "partition", r.partition, "to", preferred, "err", err)
				return
			}
			b.logger.Info("leadership handed to preferred leader", "topic", r.topic, "partition", r.partition, "to", preferred)
		}()
	}
}

func leadershipKey(s *protocol.BrokerStatus) string {
	key := fmt.Sprint(s.ControllerLeader, s.MetadataVersion)
	for _, p := range s.Partitions {
		key += fmt.Sprintf(";%d:%d:%d", p.GroupID, p.Leader, p.Term)
	}
	return key
}

// controllerCaughtUp reports whether this broker leads the controller and
// applied an entry of its own term: it then applied every entry committed
// before its term (§5.4.2), so its metadata is the cluster's current one. (A
// stricter "applied everything in the log" check would starve while
// consumer group commands keep arriving.)
func (b *Broker) controllerCaughtUp() bool {
	if b.controller == nil {
		return false
	}
	st := b.controller.group.Status()
	return st.Role == raft.RoleLeader && b.controller.state.appliedInTerm(st.Term)
}

func (b *Broker) isControllerLeader() bool {
	return b.controller != nil && b.controller.group.Status().Role == raft.RoleLeader
}

// reconcileReplicas starts the replicas the metadata assigns to this broker
// and removes the ones it no longer assigns.
func (b *Broker) reconcileReplicas() {
	m := b.currentMetadata()
	if m.Version == 0 {
		return
	}
	want := map[uint64]bool{}
	for _, topic := range m.Topics {
		for _, p := range topic.Partitions {
			if p.hasReplica(b.cfg.ID) {
				want[p.GroupID] = true
			}
		}
	}
	// Replicas no longer wanted go first: a topic deleted and created again
	// under the same name gets the same directory, which the old replica
	// must have left before the new one opens it.
	b.removeUnwantedReplicas(m, want)
	for _, name := range m.sortedTopicNames() {
		topic := m.Topics[name]
		for i, p := range topic.Partitions {
			if !p.hasReplica(b.cfg.ID) {
				continue
			}
			b.mu.RLock()
			running := b.groups[p.GroupID]
			b.mu.RUnlock()
			if running != nil {
				b.followPreferredLeader(running, p.Replicas)
				continue
			}
			now := time.Now()
			if !b.restartDue(p.GroupID, now) {
				continue
			}
			restart := b.down(p.GroupID)
			if err := b.startReplica(name, uint32(i), p); err != nil {
				// Recorded as a failure, so the run loop tries again after
				// a backoff (nothing else would before the next metadata).
				f := b.noteFailure(p.GroupID, name, uint32(i), err, now, nil)
				msg := "cannot start partition replica; trying again after a backoff"
				if restart {
					msg = "partition replica restart failed; trying again after a backoff"
				}
				b.logger.Error(msg, "topic", name, "partition", i, "group", p.GroupID, "err", err,
					"failures", f.failures, "restart_in", f.retryAt.Sub(now))
			} else if restart {
				b.replicaStarted(p.GroupID, time.Now())
			}
		}
	}
	recorded, err := b.store.replicaGroups()
	if err != nil {
		b.logger.Error("cannot list replica records", "err", err)
		return
	}
	for id, dir := range recorded {
		b.mu.RLock()
		running := b.groups[id] != nil
		b.mu.RUnlock()
		if !running && !want[id] && id < m.NextGroupID {
			// Moved away or deleted while this broker was down.
			b.removeReplicaData(id, dir, removedAtStartMessage)
		}
	}
}

// removedAtStartMessage is logged for replica data a broker finds but the
// metadata no longer assigns to it (deleted or moved while it was down).
const removedAtStartMessage = "partition replica removed: the metadata no longer assigns it here"

// removeUnwantedReplicas stops the replicas of groups that m no longer
// assigns to this broker (want), deleting their data, and forgets their
// failures. A group id at or above NextGroupID was created after m, so it
// is left alone.
func (b *Broker) removeUnwantedReplicas(m *clusterMetadata, want map[uint64]bool) {
	b.mu.Lock()
	var remove []*partitionReplica
	for id, r := range b.groups {
		if !want[id] && id < m.NextGroupID {
			remove = append(remove, r)
		}
	}
	for id := range b.failed {
		if !want[id] && id < m.NextGroupID {
			delete(b.failed, id)
		}
	}
	b.mu.Unlock()
	for _, r := range remove {
		b.stopReplica(r, true)
	}
}

func (b *Broker) replicaDir(topic string, partition uint32) string {
	return filepath.Join(b.cfg.DataDir, "topics", fmt.Sprintf("%s-%d", topic, partition))
}

func (b *Broker) startReplica(topic string, partition uint32, p partitionMeta) error {
	startedAt := time.Now()
	dir := b.replicaDir(topic, partition)
	recorded, err := b.store.replicaGroups()
	if err != nil {
		return err
	}
	if recorded[p.GroupID] != dir {
		// A directory of the same name left by an older, deleted topic (or a
		// crash before the record was written) holds another group's data.
		for id, other := range recorded {
			if other == dir && id != p.GroupID {
				b.removeReplicaData(id, other, removedAtStartMessage)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("broker: clear stale replica directory: %w", err)
		}
		if err := os.RemoveAll(snapshotDir(dir)); err != nil {
			return fmt.Errorf("broker: clear stale snapshot directory: %w", err)
		}
		if err := b.store.setReplicaDir(p.GroupID, dir); err != nil {
			return err
		}
	}
	log, err := openLog(b.cfg.FS, dir, b.cfg.Log)
	if err != nil {
		return err
	}
	if cut, ok := b.failedCut(p.GroupID); ok && cut < log.LastIndex() {
		// Restarting after a failure: drop what no sync made durable
		// (failures.go).
		last := log.LastIndex()
		if err := log.TruncateAfter(max(cut, log.FirstIndex()-1)); err != nil {
			log.Close()
			return fmt.Errorf("broker: cut log %s after %d: %w", dir, cut, err)
		}
		b.logger.Info("partition log cut back to its last durable entry", "topic", topic, "partition", partition, "group", p.GroupID,
			"durable_index", cut, "dropped_entries", last-log.LastIndex())
	}
	hs, err := (&hardStateStorage{store: b.store, groupID: p.GroupID}).Load()
	if err != nil {
		log.Close()
		return err
	}
	snapshots, err := openSnapshotStore(dir)
	if err != nil {
		log.Close()
		return err
	}
	if err := resumeInterruptedRestore(snapshots, log); err != nil {
		log.Close()
		return err
	}
	consumers, err := loadConsumerState(b.store, p.GroupID)
	if err == nil {
		if consumers.producers, err = loadProducerState(b.store, p.GroupID, log); err == nil {
			b.configureProducerState(consumers.producers)
			err = consumers.restoreFromSnapshot(snapshots, log)
		}
	}
	if err != nil {
		log.Close()
		return err
	}
	// The consumer state's applied index is a lower bound of the commit
	// index too (only committed entries are applied), often above the
	// saved one; starting there lets the configuration saved with it
	// (startConfiguration) be used.
	state, applied, err := recoverPartitionState(log, max(hs.Commit, consumers.appliedIndex()))
	if err != nil {
		log.Close()
		return err
	}
	state.consumers = consumers
	if err := consumers.replay(log, applied); err != nil {
		log.Close()
		return err
	}
	voters := startVoters(p, hs, log)
	groupConfig := b.groupConfig(p.GroupID, voters, partitionLog{timedLog{log, b.metrics.fsyncLatency}, state}, state, applied)
	groupConfig.CampaignEarly = b.campaignsEarly(p.Replicas) && !b.unstable(p.GroupID)
	groupConfig.Snapshots = snapshots
	// The configuration as of applied, which the consumer state keeps with
	// its applied index: raft then reads only the log after applied for
	// newer config entries instead of all of it.
	groupConfig.AppliedConfiguration = state.consumers.startConfiguration(applied, voters, snapshots, log.FirstIndex())
	group, err := b.host.AddGroup(groupConfig)
	if err != nil {
		log.Close()
		return fmt.Errorf("broker: start raft group %d: %w", p.GroupID, err)
	}
	r := &partitionReplica{topic: topic, partition: partition, groupID: p.GroupID, replicas: slices.Clone(p.Replicas), dir: dir, log: log, group: group, state: state, ops: &consumerOpBatcher{}, snapshots: snapshots}
	b.mu.Lock()
	b.groups[p.GroupID] = r
	b.partitions[topicPartition{topic, partition}] = r
	b.mu.Unlock()
	b.logger.Info("partition replica started", "topic", topic, "partition", partition, "group", p.GroupID, "replicas", p.Replicas, "applied", applied,
		"applied_configuration", len(groupConfig.AppliedConfiguration.Voters) > 0, "took", time.Since(startedAt).Round(time.Millisecond))
	return nil
}

// stopReplica stops a replica and, with deleteData, removes its data.
func (b *Broker) stopReplica(r *partitionReplica, deleteData bool) {
	b.mu.Lock()
	delete(b.groups, r.groupID)
	delete(b.partitions, topicPartition{r.topic, r.partition})
	b.mu.Unlock()
	r.state.wake() // waiting fetches answer at once (stillServes)
	// Waits for a retention write or delete under way on the replica (see
	// partitionReplica.retention); later ones see it stopped.
	r.stopped.Store(true)
	r.retention.Lock()
	r.retention.Unlock()
	if err := b.host.RemoveGroup(r.groupID); err != nil {
		b.logger.Warn("remove raft group", "group", r.groupID, "err", err)
	}
	if err := r.log.Close(); err != nil && !errors.Is(r.group.Err(), raft.ErrStopped) {
		// (A log whose group an error stopped returns that error again.)
		b.logger.Warn("close partition log", "group", r.groupID, "err", err)
	}
	if deleteData {
		b.removeReplicaData(r.groupID, r.dir, "partition replica removed", "topic", r.topic, "partition", r.partition)
	}
}

// removeReplicaData deletes a replica's directories and forgets its state,
// then logs message (at info level, with the group, the directory and
// attrs); a failure is logged instead.
func (b *Broker) removeReplicaData(groupID uint64, dir, message string, attrs ...any) {
	if dir != "" {
		if err := os.RemoveAll(snapshotDir(dir)); err != nil {
			b.logger.Error("remove snapshot directory", "dir", snapshotDir(dir), "err", err)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			b.logger.Error("remove replica directory", "dir", dir, "err", err)
			return
		}
	}
	if err := b.store.forgetGroup(groupID); err != nil {
		b.logger.Error("forget replica state", "group", groupID, "err", err)
		return
	}
	b.logger.Info(message, append([]any{"group", groupID, "dir", dir}, attrs...)...)
}

// replicaFor returns this broker's replica of a partition, or the client
// error that explains why there is none.
func (b *Broker) replicaFor(topic string, partition uint32) (*partitionReplica, *protocol.Error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closing {
		return nil, protocol.Errorf(protocol.CodeShuttingDown, "broker %d is shutting down", b.cfg.ID)
	}
	m := b.metadata
	if m.Version == 0 {
		return nil, protocol.Errorf(protocol.CodeNotReady, "broker %d has no cluster metadata yet", b.cfg.ID)
	}
	t := m.Topics[topic]
	if t == nil {
		return nil, protocol.Errorf(protocol.CodeUnknownTopic, "topic %q does not exist", topic)
	}
	if int(partition) >= len(t.Partitions) {
		return nil, protocol.Errorf(protocol.CodeBadPartition, "topic %q has partitions 0..%d, not %d", topic, len(t.Partitions)-1, partition)
	}
	r := b.partitions[topicPartition{topic, partition}]
	if r == nil {
		p := t.Partitions[partition]
		if b.failed[p.GroupID].down() && p.hasReplica(b.cfg.ID) {
			return nil, &protocol.Error{Code: protocol.CodeNotLeader, Leader: b.knownLeaderLocked(p.GroupID),
				Message: fmt.Sprintf("the replica of %s/%d on broker %d stopped after an error (see the broker's log); it restarts after a backoff", topic, partition, b.cfg.ID)}
		}
		if p.hasReplica(b.cfg.ID) {
			return nil, protocol.Errorf(protocol.CodeNotReady, "replica of %s/%d on broker %d is starting", topic, partition, b.cfg.ID)
		}
		return nil, &protocol.Error{Code: protocol.CodeNotLeader, Leader: b.knownLeaderLocked(p.GroupID),
			Message: fmt.Sprintf("broker %d holds no replica of %s/%d", b.cfg.ID, topic, partition)}
	}
	return r, nil
}

// leaderCheck returns nil when this broker leads r's group.
func (b *Broker) leaderCheck(r *partitionReplica) *protocol.Error {
	st := r.group.Status()
	if st.Role == raft.RoleLeader {
		return nil
	}
	leader := st.Leader
	if leader == 0 {
		b.mu.RLock()
		leader = b.knownLeaderLocked(r.groupID)
		b.mu.RUnlock()
	}
	return &protocol.Error{Code: protocol.CodeNotLeader, Leader: leader,
		Message: fmt.Sprintf("broker %d does not lead %s/%d", b.cfg.ID, r.topic, r.partition)}
}

// knownLeaderLocked is the leader of a group as the brokers' status reports
// say (the report with the highest term wins), 0 if unknown.
func (b *Broker) knownLeaderLocked(groupID uint64) uint64 {
	leader, term := uint64(0), uint64(0)
	deadline := b.silenceDeadline()
	for _, report := range b.reports {
		if report.seen.Before(deadline) {
			continue
		}
		for _, p := range report.status.Partitions {
			if p.GroupID == groupID && p.Leader != 0 && p.Term >= term {
				leader, term = p.Leader, p.Term
			}
		}
	}
	return leader
}

// Ready reports whether the broker serves requests: connected to NATS
// (both connections, in-process), holding cluster metadata, not stopping.
func (b *Broker) Ready() bool { return b.notReadyBecause() == "" }

// notReadyBecause says why the broker is not ready, "" when it is.
func (b *Broker) notReadyBecause() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	switch {
	case b.closing:
		return "the broker is stopping"
	case !b.nc.IsConnected():
		return "not connected to NATS"
	case !b.peerNC.IsConnected():
		return "the peer connection to NATS is down"
	case b.controllerError() != nil:
		return fmt.Sprintf("its controller replica stopped: %v", b.controllerError())
	case b.metadata.Version == 0:
		return "no cluster metadata yet: the controller has no leader, or this broker cannot reach it (are a majority of the bootstrap brokers running, and the routes between their NATS servers up?)"
	}
	return ""
}

// ID is the broker's id.
func (b *Broker) ID() uint64 { return b.cfg.ID }

// ClientURL is the URL of the broker's embedded NATS server, "" without one.
func (b *Broker) ClientURL() string {
	if b.embedded == nil {
		return ""
	}
	return b.embedded.ClientURL()
}

// HTTPAddr is the address /metrics, /healthz and /readyz are served on, ""
// when Config.MetricsAddr is unset.
func (b *Broker) HTTPAddr() string { return b.httpAddr }

// Close stops the broker gracefully: it stops accepting requests, hands the
// leadership of the partitions (and the controller) it leads to other
// replicas, waits for in-flight requests, and closes the logs, the state
// database and its NATS connection (and embedded server). ctx bounds the
// leadership transfer and draining (Config.ShutdownTimeout when ctx has no
// deadline). Safe to call more than once.
func (b *Broker) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { b.closeErr = b.shutdown(ctx) })
	return b.closeErr
}

func (b *Broker) shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok && b.cfg.ShutdownTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.ShutdownTimeout)
		defer cancel()
	}
	b.mu.Lock()
	b.closing = true
	for _, r := range b.partitions {
		// Waiting fetches answer shutting_down now (stillServes), so
		// draining does not wait out their max wait.
		r.state.wake()
	}
	b.mu.Unlock()
	// Tell the other brokers at once, not at the next status interval, so
	// that those closing at the same time (a whole cluster stopped
	// together) do not hand their leaderships to this one.
	status := b.localStatus()
	b.publishStatus(&status)
	b.transferLeadership(ctx)
	b.drainSubscriptions(ctx)
	drained := make(chan struct{})
	go func() { b.requests.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		b.logger.Warn("shutdown: requests still in flight", "err", ctx.Err())
	}
	close(b.stop)
	<-b.loopDone
	b.logger.Info("broker stopped")
	return b.release()
}

// minDrainTime is how long shutdown lets the API subscriptions drain even
// when its context ran out during the leadership transfers.
const minDrainTime = time.Second

// drainSubscriptions stops the API subscriptions without dropping what
// NATS already delivered to this client: Drain removes the interest at the
// server and keeps calling the handlers until the messages received before
// are handled (Unsubscribe would discard them, and their requesters would
// wait for a timeout). The broker is closing, so the handlers answer them
// with a retriable shutting-down error, or finish a request already
// tracked. It waits until every subscription is closed, at most until ctx
// is done (but minDrainTime), and then unsubscribes what is left.
func (b *Broker) drainSubscriptions(ctx context.Context) {
	wait := minDrainTime
	if deadline, ok := ctx.Deadline(); ok {
		wait = max(wait, time.Until(deadline))
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	closed := make([]<-chan nats.SubStatus, len(b.subs))
	for i, sub := range b.subs {
		closed[i] = sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			b.logger.Warn("shutdown: drain subscription", "subject", sub.Subject, "err", err)
			_ = sub.Unsubscribe()
		}
	}
	for i, ch := range closed {
		select {
		case <-ch: // closed: everything it received was handled
		case <-timer.C:
			b.logger.Warn("shutdown: subscriptions still draining; unsubscribing", "subject", b.subs[i].Subject)
			for _, sub := range b.subs[i:] {
				_ = sub.Unsubscribe()
			}
			return
		}
	}
}

// transferLeadership hands every group this broker leads to the most
// caught-up live replica.
func (b *Broker) transferLeadership(ctx context.Context) {
	type led struct {
		group    *raft.Group
		replicas []uint64
		name     string
	}
	var groups []led
	b.mu.RLock()
	for _, r := range b.groups {
		groups = append(groups, led{r.group, r.group.Status().Configuration.Voters, fmt.Sprintf("%s/%d", r.topic, r.partition)})
	}
	b.mu.RUnlock()
	if b.controller != nil {
		groups = append(groups, led{b.controller.group, b.controllerVoters(), "controller"})
	}
	// Groups led here with another replica to take over.
	leading := slices.DeleteFunc(groups, func(g led) bool {
		return g.group.Status().Role != raft.RoleLeader || !slices.ContainsFunc(g.replicas, func(id uint64) bool { return id != b.cfg.ID })
	})
	if len(leading) == 0 {
		return
	}
	// Brokers stopped together (a whole cluster) each said so a moment ago
	// (shutdown); give those reports one tick to arrive before choosing
	// targets, so that none hands its leaderships to another that is
	// stopping too.
	select {
	case <-time.After(b.tickInterval()):
	case <-ctx.Done():
		return
	}
	var wg sync.WaitGroup
	for _, g := range leading {
		target := b.transferTarget(g.replicas)
		if target == 0 {
			continue
		}
		wg.Go(func() {
			if err := g.group.TransferLeadership(ctx, target); err != nil {
				b.logger.Warn("leadership transfer failed", "group", g.name, "to", target, "err", err)
			}
		})
	}
	wg.Wait()
}

// transferTarget picks a replica other than this broker to hand a
// leadership to when it shuts down: the first that is ready, else the
// first that is alive (it may be starting), never one that reported it is
// stopping too (it would hand the leadership on, or take it down with it,
// and the transfer would wait out an election timeout for nothing). 0
// when there is none: the group elects a leader once this one is gone.
func (b *Broker) transferTarget(replicas []uint64) uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	deadline := b.silenceDeadline()
	var alive uint64
	for _, id := range replicas {
		if id == b.cfg.ID {
			continue
		}
		report, ok := b.reports[id]
		if !ok || !report.seen.After(deadline) || report.status.Stopping {
			continue
		}
		if report.status.Ready {
			return id
		}
		if alive == 0 {
			alive = id
		}
	}
	return alive
}

// release closes everything Start opened, in reverse order.
func (b *Broker) release() error {
	var errs []error
	if b.httpServer != nil {
		_ = b.httpServer.Close()
	}
	if b.host != nil {
		errs = append(errs, b.host.Close())
	}
	b.mu.Lock()
	replicas := make([]*partitionReplica, 0, len(b.groups))
	for _, r := range b.groups {
		replicas = append(replicas, r)
	}
	b.groups = map[uint64]*partitionReplica{}
	b.partitions = map[topicPartition]*partitionReplica{}
	b.mu.Unlock()
	// A log whose group an error stopped returns that error again at
	// Close: it was reported when it happened (failures.go).
	for _, r := range replicas {
		if err := r.log.Close(); !errors.Is(r.group.Err(), raft.ErrStopped) {
			errs = append(errs, err)
		}
	}
	if b.controller != nil {
		if err := b.controller.log.Close(); b.controllerError() == nil {
			errs = append(errs, err)
		}
	}
	if b.peers != nil {
		errs = append(errs, b.peers.Close())
	}
	if b.peerNC != nil && b.peerNC != b.nc {
		b.peerNC.Close()
	}
	if b.nc != nil {
		b.nc.Close()
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
	if b.metrics != nil {
		b.metrics.unregister()
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	if b.lock != nil {
		errs = append(errs, b.lock.Close())
	}
	return errors.Join(errs...)
}

func (b *Broker) serveHTTP(addr string) error {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("broker: metrics listen %s: %w", addr, err)
	}
	b.httpAddr = listener.Addr().String()
	b.httpServer = &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := b.httpServer.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.logger.Error("metrics server", "err", err)
		}
	}()
	return nil
}
