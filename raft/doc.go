// Package raft is raftmq's consensus engine: a deterministic Raft core and
// a driver (Host) that runs many groups of it on one node with real storage,
// timers and a transport.
//
// # Using the driver
//
//	host, _ := raft.NewHost(raft.HostConfig{NodeID: 1, Send: transportSend})
//	cfg := raft.DefaultGroupConfig()
//	cfg.GroupID, cfg.Voters = 7, []uint64{1, 2, 3}
//	cfg.Log, cfg.Stable, cfg.StateMachine = segLog, hardStateStore, fsm
//	group, _ := host.AddGroup(cfg)
//	// inbound frames from the transport: host.Step(msg)
//	p := group.Propose(ctx, protocol.EntryRecordBatch, batch, raft.AckCommitted)
//	index, term, err := p.Wait(ctx) // *NotLeaderError carries the leader
//	readIndex, err := group.ReadIndex(ctx) // then read the local state machine
//
// # Contract
//
// Propose takes ownership of data: the caller neither modifies nor reads
// it afterwards. On a log that assigns record offsets (segmentlog.Log),
// the leader stamps a record batch's base offset into those very bytes
// when it appends it, so that it replicates and applies the batch without
// copying it; a follower copies a received batch only when it does not
// carry its offset already.
//
// Log storage (LogStorage, implemented by segmentlog.Log) is written only by
// the driver: Append and TruncateAfter from the worker running the group,
// Sync from a sync worker, concurrently, or from the worker running the
// group itself, after it sent what it appended. The core reads it. Stable storage
// (StableStorage) is saved on the worker before any message that depends on
// the new term or vote is sent. The state machine receives committed
// entries in order, in batches, from one apply goroutine at a time.
//
// Durability: term and vote are durable before any reply that depends on
// them (§5.2); a follower acknowledges AppendEntries only for entries its
// log reported durable, and its commit index never exceeds its durable log
// matching the leader's; the leader writes its own log in parallel with
// sending AppendEntries (thesis §10.2.1) and counts itself toward a quorum
// only once its write is durable. "Durable" notices name (term, index), so a
// truncated-and-rewritten index is never mistaken for the old entry. A
// truncation is durable before anything appended after it is (LogStorage).
//
// # The core
//
// core (unexported, used by the driver and the simulation tests) takes
// inputs — a peer message (step), proposals (propose), a durable notice
// (durableNotice), the passage of time (tick, called at the deadline it
// asked for) — and produces a ready: entries and hard state to persist,
// messages to send, committed entries to apply. It has no goroutines, no
// clock and no unseeded randomness, so a simulation replays any run from a
// seed.
//
// Features: randomized election timeouts (a replica configured to
// CampaignEarly draws from the half below the others' range, so its owner
// picks a new group's first leader; Group.SetCampaignEarly moves it while
// the group runs); PreVote (thesis §9.6) and
// CheckQuorum with a leader lease so a rejoining node cannot depose a
// healthy leader; a no-op entry on election and the §5.4.2 commit rule;
// the §5.3 consistency check with conflict truncation and fast backtracking
// by conflict term/index hint; pipelined replication with probe/replicate
// flow control per follower, bounded by in-flight messages and bytes, in
// AppendEntries of at most MaxAppendBytes of encoded entries (raftLog
// counts each entry's encoding, protocol.RaftEntrySize, over what
// LogStorage and the entry window return, which count data only);
// leadership transfer with TimeoutNow (abandoned after an election
// timeout, proposals refused meanwhile). Replies from older terms are
// ignored.
//
// Linearizable reads use ReadIndex (thesis §6.4, readindex.go): the leader
// takes its commit index once it has committed an entry of its term,
// confirms leadership with a heartbeat round started after the read
// arrived (heartbeats carry the round in Context), and the reader waits
// until its state machine applied that index. One round is in flight at a
// time; reads arriving meanwhile share the next one. Followers forward reads
// to the leader (MsgReadIndex) and wait for their own apply.
//
// # Concurrency
//
// A Host owns a pool of workers that run group cores (a group runs on one
// worker at a time), one scheduler goroutine with a heap of group deadlines,
// a pool of sync workers and a pool of apply workers. An idle group costs
// memory only. Group and Host methods are safe from any goroutine.
// Propose does not take the group's lock: it queues the proposal in the
// group's inbox (inbox.go), whose own lock guards two appends, and only
// the proposer that finds the inbox empty schedules the group; the worker
// swaps the whole inbox out at once and proposes it as one batch
// (ProposeBatch queues many entries in one push, under one future). A
// proposal that raced a step-down, a transfer or Close still resolves
// (NotLeaderError or ErrTransferring from the core, ErrClosed from Close).
//
// A leader that steps down keeps its proposals pending: the next leader
// may still commit their entries. Once its log drops one (a follower's
// conflict truncation, or a snapshot restore that discards the log), the
// proposal resolves at once: ErrProposalDropped when a committed entry
// took its index, nil when the snapshot shows it committed, else a
// *NotLeaderError whose outcome is unknown (another replica may hold the
// entry). Left pending, it would wait for a commit index that may never
// come, and block the in-order resolution of later proposals.
//
// Closing a group (RemoveGroup, Host.Close, or a storage or state machine
// error) resolves everything pending, including what a worker in the
// middle of a round hands out after close took the queues (an AckApplied
// proposal, a confirmed read): a worker that finds the group closed
// resolves it with the close error instead of queueing it. Every run, sync
// and apply worker and every snapshot transfer counts itself in the group
// while inside it (Group.enter); a worker checks for close before each
// ready's writes, before an inline sync and between applied batches, and
// RemoveGroup returns only when none is inside. After it returns the
// driver calls none of the group's storage, state machine or snapshot
// store, so the owner may close and delete them. RemoveGroup and
// Host.Close therefore must not be called from a callback the workers run
// (StateMachine, LogStorage, StableStorage, HostConfig.Send); the broker
// removes replicas from its run loop.
//
// # The entry window (window.go)
//
// The driver reads recent entries from memory, not from LogStorage: every
// append goes through a window that keeps the appended slices (small
// appends are gathered into an array it owns) up to
// GroupConfig.EntryWindowBytes, and serves Term and Entries from them for
// AppendEntries to followers and for Apply. It drops entries once they are
// applied and every follower has them; when full it keeps its oldest
// entries (read next) and takes no more until it drains, dropping
// everything applied, so a follower that is down cannot pin it. It serves
// only indexes inside the log's first and last index at the time of the
// call, which keeps it correct across truncation, compaction and snapshot
// resets; anything else, and reads straddling its edges, come from
// LogStorage.
//
// # Replication flow control
//
// A follower answers every heartbeat with the last index it received
// matching the leader (durable or not) and its durable match. The leader
// resends from the match index only when a heartbeat shows nothing arrived
// over a whole interval while entries are outstanding (messages were lost),
// not when a follower's fsync is merely slow; a durable match the leader
// missed counts as a repeated acknowledgement (for a follower in snapshot
// state, once the leader's log continues from it: the acknowledgement of
// an install was lost). A follower that reports
// less than the match the leader has for it no longer knows where its log
// matches (it restarted), and heartbeats alone cannot advance its commit
// index: the leader sends it an AppendEntries at that match, empty when
// nothing is outstanding, which carries the commit index.
//
// Snapshots (snapshot.go): a follower whose next entry the leader's log no
// longer holds enters the snapshot state of its progress, and the core asks
// its driver (ready.snapshots) to stream a snapshot; the follower's core
// decides whether a received snapshot is skipped (index already committed),
// keeps the log (the log holds its last entry with its term) or restores
// (the whole log is discarded, conflicting suffix included) and then
// acknowledges it with an ordinary MsgAppendResponse. A transfer that makes
// no progress for two election timeouts is requested again.
//
// # Snapshots in the driver (snapshot_driver.go)
//
// The owner of a group keeps its snapshots in a snapshot.Store
// (GroupConfig.Snapshots), writes them itself as of an applied index (at
// segment boundaries, by policy), reports each with Group.SnapshotTaken,
// and then compacts the log when it likes (segmentlog DeleteBefore; the
// core only reads FirstIndex, and takes a read that a deletion overtook for
// entries compacted away: see LogStorage). For a follower that needs compacted entries
// the leader streams the newest stored snapshot whose index+1 the log still
// holds: MsgSnapshot messages carry snapshot chunks (snapshot.Sender,
// encoded chunk at most MaxAppendBytes), MsgSnapshotAck the receiver's
// acks; snapshot.SendWindow keeps 8 chunks in flight, resends from the
// acknowledged offset on repeated acks or after half an election timeout
// without one, and the transfer is given up after two election timeouts
// without progress (the core probes and asks again). Transfers are
// abandoned when the leader loses leadership or its term. A request no
// stored snapshot can serve waits for SnapshotTaken. Each active transfer
// runs on a goroutine of its own; an idle group has none.
//
// The follower receives into its own store (snapshot.Receiver: in order,
// CRC-checked end to end, installed by rename after fsync, so a crash
// mid-transfer leaves the old state). Once installed, the worker asks the
// core (skip / keep log / restore). To restore, the state machine must be a
// Restorer and the log a LogResetter (segmentlog.Log is): the driver waits
// for a running Apply to return (on a condition the apply loop signals),
// calls Restore with the snapshot body, then
// ResetOffsets(index+1, term, meta.NextOffset), then tells the core, which
// acknowledges the leader; ordinary AppendEntries follow. A crash after the
// snapshot reached the store but before the log reset leaves a store whose
// Latest() is past the log's last index, or disagrees with the log's term
// at its index (the install was replacing a conflicting suffix): on start
// the owner calls ResumeSnapshotInstall, which resets the log in both
// cases, restores its state machine from the snapshot it returns when the
// state machine is behind it, and passes its applied index as
// GroupConfig.Applied to AddGroup.
//
// # Commit index and high watermark
//
// The commit index is not durable: HardState.Commit is a hint saved with
// term and vote changes. A replica starts at max(hint, GroupConfig.Applied)
// (never past its log) and learns the rest from the leader within a
// heartbeat. A new leader knows the commit index it heard as a follower,
// which can trail what the old leader committed; it advances it only by
// committing an entry of its own term (the no-op it appends on election,
// §5.4.2), one round trip later. A reader of Status().CommitIndex (the
// broker's high watermark) therefore sees it monotonic per replica, but
// after a leader change the new leader's value can briefly be lower than
// the old leader's: offsets between the two are appended and will commit,
// so a fetch there should wait, not fail (TestNewLeaderCommitIndexTrails-
// TheOldOneUntilItsNoopCommits).
//
// # Membership (membership.go, membership_driver.go, bootstrap.go)
//
// The configuration (protocol.RaftConfiguration: voters, outgoing voters,
// learners) is data in the log, one whole configuration per EntryConfig
// entry. It takes effect when appended and is reverted when a truncation
// removes it (§6). Voter changes go through joint consensus
// (quorum.Joint): Group.ChangeMembership appends C_old,new, the leader
// appends C_new once that commits, and ChangeMembership returns when C_new
// is committed; commit, elections, CheckQuorum and ReadIndex confirmation
// need majorities of both halves meanwhile. Group.AddLearner adds a
// non-voter that receives the log and snapshots but never counts toward a
// quorum and never campaigns (neither does a node outside the
// configuration); Group.PromoteLearner promotes one within
// GroupConfig.PromoteMaxLag entries of the leader; Group.AddVoter does both,
// promoting automatically once the learner caught up. One change at a time, and
// a new leader makes none before it commits an entry of its own term. A
// leader not in C_new steps down once C_new commits. Propose refuses
// EntryConfig entries (ErrConfigEntry). EntryConfig entries reach the
// state machine like any other committed entry; it may ignore them.
//
// Formation: Bootstrap writes the first configuration into empty storage
// on one or all initial servers (ErrAlreadyBootstrapped otherwise);
// GroupConfig.Voters remains a bootstrap without a log entry, used until a
// config entry exists. On start a replica takes the newest config entry in
// its log (scanning back from the end to the newest committed one), else
// the Configuration of the newest stored snapshot that covers the log's
// compacted prefix, else Voters. A snapshot's owner should record the
// configuration as of its index in snapshot.Meta.Configuration (the newest
// EntryConfig entry its state machine applied, decoded with
// protocol.DecodeRaftConfiguration); a follower that restores a snapshot
// takes its configuration from there (from one without, it keeps only the
// configurations of its log at or below its commit index: the rest of its
// log is discarded and may never have committed). The start-up scan reads
// the log back to its newest config entry, stopping at the covering
// snapshot's index (at the log's first index without one) — all of the
// log when the configuration did not change since the snapshot. An owner that keeps the
// configuration its state machine applied passes it as
// GroupConfig.AppliedConfiguration, and the scan reads only the log after
// Applied.
//
// # Performance (100 B entries, 3 nodes in one process, 2 shared cores)
//
// BenchmarkClusterSegmentlog/100B (64 proposers, 16K entries in flight)
// is limited by how the nodes overlap appending with fsync, not by CPU:
// before session 6 the process used under one of its two cores. A trace
// of each node's rounds showed the leader's run worker working about 26%
// of the wall time and blocked in its own inline fdatasync 57%, serially:
// proposals that arrived during the sync waited for it before they were
// appended and sent. A run worker now syncs inline only when nothing more
// is queued for the group; otherwise a sync worker syncs while the run
// worker appends and sends the next batch. Three alternated runs each of
// 2M entries on the shared disk (load 0.9-1.6): 0.73-0.90M -> 1.07-1.48M
// entries/s, 0.49-0.79 -> 0.55-0.82 of the disk-only baseline of the same
// run. The shared disk's fsync time varies tens of times between runs, so
// BenchmarkClusterSegmentlogSyncDelay replaces it with a fixed 1 ms sync
// on tmpfs: 1.61-1.82M -> 1.90-2.06M entries/s (0.26-0.28 -> 0.32-0.37
// of the delay-only baseline). More hand-offs: wake-ups per committed
// batch 3.7-4.2 -> 11-21; bytes allocated per entry 224-293 -> 259-286
// (smaller appends grow more arrays). One proposal at a time keeps the
// inline sync: BenchmarkClusterSegmentlogLatency/100B commit p50 over
// one write+fdatasync's p50 1.58-1.73 before, 1.60-1.66 after.
//
// While a run worker syncs inline it holds the group, so a follower's
// acknowledgement that arrives meanwhile waits for the leader's own
// fdatasync, even when it and the other follower's already make a quorum
// without the leader. Tried in session 9 and left out: the run worker
// let go of the group first and then ran the sync loop itself (one sync;
// more went to a sync worker; a sync chosen this way went to a sync
// worker at once when more work arrived before the worker let go). A test
// with the leader's Sync held open showed followers committing five
// proposals, where the code as it is waits for the held sync. But
// everything that arrived during the sync was then processed at once, in
// smaller rounds, instead of in one round after it: `raftmq bench produce
// --brokers 3 --replicas 3 --rate 400000 --duration 5s --size 100`
// (2026-11-23, load 0.7-3.8), p50 / p99 ms, three alternated pairs per
// variant: as it is 4.1-6.9 / 43-168; letting go without the hand-offs
// 12-53 / 194-304 (one run could not hold the rate: 386,176 records/s);
// with them 5.8-9.6 / 75-163. BenchmarkClusterSegmentlog/100B stayed
// within its noise (0.73-0.90M against 0.72-1.01M entries/s).
//
// The proposal inbox (session 7). Propose no longer takes the group's
// lock: it queues in the group's inbox (inbox.go) under a lock of the
// inbox's own, and only the proposer that finds the inbox empty schedules
// the group. The run worker no longer waits for proposers (the group's
// lock showed 92% of its mutex delay as proposers waiting for each other,
// and the worker behind them); the 64 proposers of the benchmarks still
// wait for each other, now on the inbox's lock (all of the mutex delay of
// a SyncDelay run is there: 4.2 s against the old 2.2 s on the group's
// lock, blocked time, not CPU). A lock-free stack (one compare-and-swap
// per push) was tried first: its worker walks a linked list of Proposals
// other cores just wrote, one dependent cache miss after another, on the
// goroutine every entry passes through, and BenchmarkClusterMemory/100B
// took more CPU per entry (medians of nine noisy runs each, 1,110 against
// 981 ns).
//
// Figures, four alternated pairs of 2M entries each, before/after, on a
// machine another engineer's benchmarks shared (load 0.7-2.1 in three
// pairs, 0.4-0.5 in the last): CPU per entry of the whole process,
// BenchmarkClusterMemory/100B 842-962 -> 814-1,031 ns;
// BenchmarkClusterSegmentlog/100B 743-1,186 -> 807-1,156 ns (0.57-0.75
// -> 0.59-0.72 of the disk-only baseline); SyncDelay (1 ms on tmpfs)
// 665-1,084 -> 760-1,052 ns (1.05-2.31M -> 1.30-2.06M entries/s, 0.18-0.39
// -> 0.25-0.38 of the delay-only baseline); BenchmarkProposeSingleNode (a
// one-voter group, no disk) 323-428 -> 338-491 ns. Bytes per entry and
// wake-ups per batch unchanged (SyncDelay 265-312 B, 7-14 wake-ups). No
// change outside the noise. One proposal at a time
// (ClusterSegmentlogLatency/100B, three pairs at load 0.6-0.9) commit p50
// over fsync p50 1.67-1.73 -> 1.39-1.73: no regression.
//
// Where the CPU goes (session 8; -cpuprofile of 3M entries, SyncDelay at
// 1 ms on tmpfs, ~410 ns of wall time and ~640 ns of CPU per entry):
// segmentlog's Append 35% on the three replicas (its pwrite to tmpfs 14%,
// appendOne 30% cum), the runtime scheduler 13-15% (park_m/findRunnable,
// and wakep starting an M for each goroutine readied while the other P
// idles: mostly the 64 proposers, each parking on its oldest future and
// woken once per committed batch; the host's own hand-offs are 12-16 per
// batch of ~5,500 entries, a few ns per entry), the proposers' Propose
// 13% (the inbox's lock and the slab allocation, 5.6%), the core's
// propose 6% (appending the proposed entries to its unstable tail, a
// copy of each 48-byte Entry into a new array, write barriers included),
// resolveCommitted 6.5%, and the followers' handleAppend 4% (the same
// copy of received entries). BenchmarkClusterMemory/100B differs: its
// benchLog keeps every entry of the run, so each unstable array is fresh
// memory, and the copies into them (typedslicecopy) took 30% of its CPU,
// page faults included; a cost of that benchmark's log, not of the
// segmentlog cluster.
//
// Batch Propose (session 8). Group.ProposeBatch proposes many entries
// under one future (one inbox push, one Proposal, consecutive indexes,
// resolved as the last entry is). The broker proposes one record batch
// per producer request and does not need it; it shows what the
// per-proposal side costs. BenchmarkClusterSegmentlogSyncDelayBatch16
// (the same 16K entries in flight, 16 per call) beside the 64-proposer
// shape in the same three runs (load 0.8-1.8): 496-531 against 585-626
// CPU-ns per entry (one outlier run of the Propose shape at 1,019 left
// out), 2.78-2.98M against 2.55-2.59M entries/s, 186-201 against 224-232
// bytes per entry: about 90 ns of CPU per entry is Propose, its future
// and the proposers' parking. The Propose path itself is unchanged (one
// nil check per proposal in the worker): in the closing runs (load
// 1.9-2.9, one run each so far, not a comparison) ClusterSegmentlog/100B
// before the change ran at 0.58 of its disk-only baseline (783
// CPU-ns/entry), SyncDelay after it at 2.61M entries/s (0.46 of the
// delay-only baseline, 607 CPU-ns/entry), ClusterSegmentlogLatency/100B
// after it at a commit p50 of 1.49 times the fsync p50.
//
// Tried in session 8 and left out:
//
//   - The core keeping the proposed entries' array as its unstable tail
//     instead of copying it (the inbox then gets a new array per batch,
//     sized 1.25 times the last one, as the window keeps the old one):
//     bytes per entry rose (SyncDelay 235-245 -> 338-347, ClusterMemory
//     189-203 -> 250) as batches vary and proposers grew the new array
//     under the inbox's lock, and CPU per entry did not fall (SyncDelay
//     625-639 -> 729-749 ns, two alternated pairs).
//   - A Proposal without a lock (state moved by compare-and-swap, 48
//     bytes instead of 64): BenchmarkProposeSingleNode, eight alternated
//     runs each at load 1.8-2.1, median CPU per entry 452 ns with the
//     lock, 513 without, 533 without but padded to 64 bytes (ns/op 295,
//     303, 325); only bytes per entry fell (128 -> 112). The cluster
//     benchmarks showed no change outside their noise.
//
// Left: the copies of each entry into the core's unstable array (leader
// and followers) would go only with an unstable tail that holds the
// arrays it was given (a list of runs) instead of one contiguous array;
// the proposers' parking (a property of many single-entry proposers;
// ProposeBatch is the way out for callers that have many entries);
// segmentlog's per-entry Append.
package raft
