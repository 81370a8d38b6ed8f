// Package broker is the raftmq daemon: it runs the controller and partition
// Raft groups of one broker and serves the client API over NATS.
//
// # Usage
//
//	cfg := broker.DefaultConfig()        // broker 1, embedded NATS on 127.0.0.1:4222, ./raftmq-data
//	cfg.ID, cfg.Bootstrap = 2, []uint64{1, 2, 3}
//	cfg.Registerer = prometheus.NewRegistry()
//	b, err := broker.Start(ctx, cfg)
//	...
//	err = b.Close(ctx)                   // on SIGTERM: hand off leadership, drain, close
//
// For trying raftmq out, StartDev runs N brokers in one process, each with
// an embedded NATS server, the servers routed into one NATS cluster
// (raftmq dev).
//
// # Structure
//
//   - One raft.Host per broker drives every group. Raft messages are encoded
//     with protocol.AppendRaftMessage and carried by transport.Transport on
//     <prefix>.peer.<broker>; inbound frames go to Host.Step. A broker that
//     reaches its NATS server in-process runs the transport, the metadata
//     broadcast and its status reports on a second connection, in the
//     server's peer account (transport.PeerAccount), where clients cannot
//     see or publish; over TCP all of it shares the client connection
//     (docs/adr/0005). A broker in the peer account logs, once, each
//     broker it hears report in the client account.
//   - The controller group (group id 1; the raft package reserves 0) runs on
//     the bootstrap brokers. Its log holds controller commands (EntryControl,
//     JSON): register broker, create topic, delete topic. Applying them
//     yields the cluster metadata (brokers, topics, replica assignment).
//     Assignment is computed at apply time, deterministically: each new
//     partition's preferred leader (first replica) is the broker preferred
//     for the fewest partitions, its followers the brokers holding the fewest
//     replicas. Partition group ids come from a counter and are never
//     reused. The controller state machine replays its (small) log on start.
//     The preferred leader's replica campaigns early (campaignsEarly,
//     raft.GroupConfig.CampaignEarly), so a new partition is first led by
//     it; a reassignment that only reorders the replicas moves that to the
//     new first replica at once (followPreferredLeader); a broker leading
//     a partition it is not preferred for (after a failover) hands it back
//     every few status intervals (balanceLeaders).
//   - The controller leader broadcasts the metadata on
//     <prefix>.cluster.metadata at every change and every StatusInterval.
//     Every broker adopts metadata with a higher version and starts the
//     replicas assigned to it and removes (with their data) the replicas of
//     deleted topics. Group ids at or above the metadata's NextGroupID are
//     never removed, so replaying old metadata cannot delete new data.
//   - Every broker publishes a status report (its partitions' roles, terms,
//     leaders, commit indexes) on <prefix>.cluster.status every
//     StatusInterval and whenever a leadership changes. The reports give
//     liveness (alive = heard within 3 intervals) and the partition leaders
//     that metadata replies, not-leader hints and the plain publish subject
//     use.
//   - Each partition replica is a raft group on a segmentlog.Log in
//     <data>/topics/<topic>-<partition>. Its state machine only tracks the
//     applied index and the high watermark (the offset after the last applied
//     record batch) and wakes long-polling fetches when they advance. On
//     restart the state is recovered from the saved commit index and the log
//     (no replay).
//   - One Pebble database per broker (<data>/state) holds every group's Raft
//     hard state (raft.StableStorage, key 'h'+group id) and the replica
//     records (key 'r'+group id -> directory).
//   - <data>/raftmq.lock is held while the broker runs; a second broker on
//     the same directory fails with ErrDataDirLocked.
//
// # Data path
//
// Produce (broker-addressed subject): the request is decoded, the partition
// looked up, leadership checked (not leader -> CodeNotLeader with the
// leader's id), the batch checked (size limit, CRC and header via
// protocol.VerifyBatch, then every record decoded, decompressed if need be,
// as a consumer will: the count, each record's fields, max record bytes),
// the append time stamped into the broker's own copy of the
// bytes (the base offset is assigned by segmentlog on append, docs/adr/0001)
// and proposed. Proposals are made on the subscription's goroutine, so
// batches one connection sends enter the log in order. The reply goes out
// when the entry commits (acks=quorum, the default) or is applied
// (acks=applied), with the base offset read back by Log.OffsetOfIndex.
// acks=leader (unsafe, opt-in) is answered once the leader appended the
// batch to its own log (raft.AckAppendedUnsafe), before it is durable or
// replicated. A batch the leader appended and then lost before the
// acknowledgement (it stepped down, its replica stopped) may still be
// committed by another leader: it is answered timeout ("may still be
// committed"), never not_leader (produceError).
//
// Idempotent produce (dedup.go, docs/adr/0003): a batch with a producer id
// > 0 is checked against the partition's replicated producer state (last
// sequence and last 5 batches per producer id, updated on apply) plus the
// batches this leader proposed in its term: a repeat is answered with the
// original offset and not appended; a gap gets out_of_order_sequence
// (retriable), a batch past sequence 0 of a producer id the partition has
// no state for (evicted: it keeps 10,000, and every producer that appended
// in the last 15 minutes up to 100,000) unknown_producer (retriable; the
// SDK starts a new epoch), a repeat older than the window
// duplicate_sequence, an older epoch producer_fenced. A new leader answers
// not_ready until it applied its election no-op.
//
// Fetch: raw batch bytes from Log.ReadBatches, never past the applied index
// (applied <= committed, so nothing uncommitted is ever served), written
// straight behind the reply header. With nothing new the request waits up to
// its max wait for the state machine to advance (no polling). A request
// that waited answers only if, when woken, its replica is still the
// broker's and still leads, and the broker is not closing; stopping a
// replica (topic deleted, moved away) and starting to close wake the
// waiting requests, which then get the matching error at once. An offset
// below the log start or beyond any assigned offset gets
// CodeOffsetOutOfRange with the valid range.
//
// Plain publish (<prefix>.api.produce.<topic>, any broker): the payload is
// wrapped into a one-record batch and produced at the partition leader
// (locally or by forwarding to the leader's produce subject, following
// not-leader answers); the JSON reply is {"partition":P,"offset":O}.
// Retriable errors are retried until the produce timeout, with a pause
// (backing off from 50 ms to 500 ms) before a broker already asked since
// the last pause is asked again, so brokers whose stale views name each
// other as the leader do not bounce the request in a tight loop; a final
// retriable error says how many attempts went to which brokers. Once an
// attempt's outcome is unknown (timeout), a later failure is answered
// timeout too: that attempt may have written the record.
//
// Admin requests (<prefix>.api.admin.<op>) are answered by any broker;
// create and delete are forwarded to the controller leader. Create waits
// (up to 5 s) until every new partition has a leader, so the topic can be
// used at once. Describe, list and cluster status are answered by the
// controller leader once it applied its log, so they show every
// acknowledged change whichever broker the request reached; metadata
// (what clients route by) is answered by any broker from its own view.
// When no controller leader has been known for a few election timeouts
// (noControllerLeaderWait), a forwarded request, or a command proposed by a
// leader that then lost its quorum, is answered not_ready saying so instead
// of waiting out the admin timeout; a cluster status is then answered from
// the broker's own view.
//
// # Consumer groups
//
// Offsets live in each partition's own Raft log (docs/adr/0002). An offset
// commit, a claim, a reset or a delete is a consumer-op control entry
// (protocol.AppendConsumerOps) proposed by the partition leader; concurrent
// ops at one leader are coalesced into one entry per partition
// (consumerOpBatcher: while one entry is being applied the next queues).
// Applying the entry updates the partition's consumer state (consumerstate.go:
// Pebble keys 'o'+group id+group name, 'a'+group id = applied index,
// 'c'+group id = the Raft configuration as of that applied index, written in
// the same batch, which start-up passes as raft.GroupConfig.AppliedConfiguration
// so it does not scan the retained log; mirrored in memory), the same on every replica at the same applied index.
// A commit past the leader's high watermark is refused before proposing
// (the leader's high watermark is at most the one where the entry applies,
// on every replica). A commit or claim whose assignment epoch is older than
// the stored one is refused (CodeStaleEpoch). A group delete and a reset
// of offsets carry the controller index they were done or checked at
// (coordinator.go): the partition fences the epochs below it
// (consumerRecord.Fence), and applies a delete or reset only over state
// older than it (a record claimed, reset or fenced at a higher index
// stays), so late ops change nothing newer; a delete leaves its tombstone
// on every partition of the group's topics, also where the group has no
// record yet (a member's claim may be on its way). A committed-offset read
// goes through the log too (a claim, or an empty consumer-ops entry as a
// read barrier, coalesced with other ops): once it applied, the leader's
// state holds every commit acknowledged before the read, and a deposed
// leader cannot serve a stale offset (it cannot commit the barrier). On restart the
// control entries after the stored applied index are replayed from the log.
//
// The group coordinator is the controller leader (coordinator.go): join,
// leave, sync (release of revoked partitions), delete and the no-members
// check of a reset of offsets are controller commands; the assignment is
// computed at apply time (groups.go: sticky, balanced per topic,
// cooperative: a partition moves only after its owner
// released it, left or expired, and is granted with the grant's controller
// index as its epoch). Heartbeats stay in the coordinator's memory; a new
// coordinator restarts every member's session. Heartbeats carry a per-member
// sequence number (Seq): one not above the highest seen, or above the
// replicated SyncSeq of the member's last sync, is stale and neither
// releases partitions nor renews the session (coordinator.go). The coordinator publishes
// <prefix>.group.changed.<group> when an assignment changes so members
// heartbeat at once. A member claims each new partition at its leader (a
// claim op raises the stored epoch, fencing the previous owner) and starts
// at the committed offset read after the claim applied.
//
// Lag per group and partition (raftmq_group_lag_records, _lag_seconds,
// _committed_offset) is exported by partition leaders at scrape time.
//
// # Retention
//
// retention.go: every CheckInterval each replica computes the first index
// its topic's policy keeps (age, bytes; topic overrides, broker defaults) —
// always the first index of a segment — and, once it applied everything
// before it, writes a consumer-state snapshot (snapshot.Store in <replica
// dir>.snapshots, also the raft group's GroupConfig.Snapshots) as of exactly
// the last index of the newest segment to delete, when none covers them. The
// snapshot is built without pausing the partition: from the previous
// snapshot (or the empty state of a log that starts at index 1) the log's
// entries up to that index are replayed into a scratch in-memory state with
// the replica's own deterministic apply; its Meta records the Raft
// configuration as of the index (the newest EntryConfig entry at or below
// it, else the previous snapshot's, else the group's bootstrap voters). It
// is reported to the group (Group.SnapshotTaken), the covered sealed
// segments are deleted and old snapshots pruned, keeping the newest that
// covers the log start. So the newest snapshot always ends where the log
// starts. A restart whose stored consumer state is older than the log start
// restores the newest snapshot first.
//
// Retention does not wait for the other replicas. That is safe because a
// replica that needs deleted entries catches up by InstallSnapshot: the
// leader streams its newest snapshot; the replica restores its state
// machine from it (partitionStateMachine.Restore: group offsets and
// producer state), the raft driver resets its log (partitionLog's
// ResetOffsets) to continue at the leader's log start, and only then are
// the applied index and high watermark (Meta.NextOffset) published to
// fetches: before the reset the log may still hold a suffix that never
// committed. Ordinary AppendEntries then send every retained
// segment: the same group offsets, and the same records at the same offsets
// as the leader, from the leader's log start on. A crash between the
// install and the log reset is finished at start-up
// (resumeInterruptedRestore).
//
// # Membership
//
// membership.go. Every broker runs a replica of the controller group: the
// Bootstrap brokers as its first voters, any other broker outside the
// configuration (it neither campaigns nor receives anything) until
// AdminAddController adds it as a learner, which the controller leader
// promotes once it caught up; AdminRemoveController removes a member with a
// joint-consensus change (never the last voter, nor one whose removal
// leaves voters the leader has no answering majority of: the joint
// configuration could then never commit). A broker outside the
// controller configuration ignores its own replica's idea of the leader.
// A bootstrap broker with an empty controller log first asks the other
// bootstrap brokers for the controller membership: if a running cluster's
// controller no longer counts it (removed, then back with an empty disk),
// it starts outside the configuration instead of bootstrapping it again
// (controllerStartVoters).
//
// A partition reassignment (AdminReassignPartition, or AdminReplaceBroker
// for every partition of one broker) is recorded by the controller as the
// partition's Target; the brokers in Target start their replica at once,
// empty and with no GroupConfig.Voters, so it stays passive until the
// leader sends it the configuration (startVoters: only a group never
// reassigned, or a replica holding Raft state, starts with the group's
// bootstrap voters, the configuration as of index 0; brokers that left and
// come back empty must not be able to elect a leader of their own). The
// partition's leader then drives the group one step per
// status tick, each step starting from the configuration in effect, so a
// leader change or a restart resumes where it stands: add the target
// brokers as learners (they catch up by snapshot plus retained segments),
// promote each learner once within PromoteMaxLag entries, hand leadership
// to a target voter when the leader itself leaves, remove the members
// outside the target with one joint-consensus change, then report to the
// controller (AdminReassignDone), which makes Target the replica set (the
// report names the move by the controller index that set Target, so a late
// report of a cancelled move never ends a later one). The brokers no
// longer named stop their replica and delete its log, snapshots and state
// (reconcileReplicas; a broker that was down does it when it starts and
// sees the metadata). The controller refuses a reassignment of
// a partition that has one in progress, unknown or down brokers, repeated
// ids; the partition keeps serving producers and consumers throughout. A
// cancel (ReassignPartitionRequest.Cancel) makes Replicas the target again;
// the brokers only the cancelled target named are Leaving: they keep their
// replica (they may be Raft members) until the leader removed them and
// reported the move back done, then delete it. A cancel is refused while a
// broker the move back returns the replica to (one the cancelled target
// left out) is down: the move back could not finish, and nothing could
// cancel it in turn. A cancel of a move back is refused too: it has
// nothing to turn back.
//
// # Concurrency
//
// Start and Close are called once. A background loop owns starting and
// stopping replicas and the periodic publications; request handlers run on
// NATS subscription goroutines and on one goroutine per fetch, admin and
// plain publish request. The Broker's maps are guarded by one RWMutex.
// Close drains the API subscriptions (bounded by its context): requests
// already received are answered, with a retriable shutting-down error if
// they cannot be served, instead of being dropped. Before that it hands the
// leaderships it holds to other replicas. It first reports that it is
// stopping (protocol.BrokerStatus.Stopping) and waits one status tick, so
// brokers stopped together (a whole cluster) hand nothing to each other: a
// transfer to a broker that stops too waits out an election timeout.
//
// # Consistency of reads
//
// A produce is acknowledged at commit; the high watermark moves when the
// leader applies. A fetch or list-offsets request first waits (briefly) for
// the leader to apply everything committed when it arrived, so records
// acknowledged before a read is sent are visible to it.
//
// # Durability
//
// A produce acknowledged with acks=quorum is durable on a quorum of replicas
// (Raft commits only fsynced entries). Raft hard state is saved with a
// synced Pebble write before any message depending on it is sent.
//
// A replica whose log fails to write or sync stops (raft.Group.Stopped);
// the run loop notices it at its next tick, keeps its data, reports it
// (status, metrics, an error log) and restarts it after a backoff, its log
// first cut back to the last entry a sync confirmed, and hands it no
// leadership for a while after (failures.go). The controller replica is
// reported, not restarted.
package broker
