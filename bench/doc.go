// Package bench is raftmq's throughput and latency harness, run side by
// side with NATS JetStream.
//
// # Usage
//
// From the command line (see cmd/raftmq):
//
//	raftmq bench produce --brokers 3 --replicas 3 --count 1000000 --size 100 --vs jetstream --json
//	raftmq bench produce --brokers 3 --replicas 3 --count 1000000 --size 100 --vs nats-fabric
//	raftmq bench produce --brokers 3 --replicas 3 --count 2000000 --size 100 --vs disk,nats-fabric --json
//	raftmq bench consume --brokers 3 --replicas 3 --count 1000000 --size 100
//	raftmq bench e2e --rate 50000 --duration 30s
//
// From Go, build a Workload (DefaultWorkload, then change fields), start
// Targets (StartJetStream, StartRaftmq, StartFabric, StartDisk) and call Run, or call RunCommand
// with command-line arguments.
//
// # Workloads
//
// produce measures publish-to-acknowledgement; consume fills the partitions
// (untimed) and then replays each from its first record; e2e produces and
// consumes at once and measures publish-to-delivery. With Workload.Rate set
// the producers send on a fixed schedule and every latency counts from the
// record's intended send time, which corrects for coordinated omission
// (a stalled system cannot hide the records it kept from being sent).
// Latencies go into HdrHistograms (1 µs to 10 min, 3 significant digits).
//
// Every record carries its producer, sequence number and send time. A
// ledger checks that each sent record is acknowledged once and, when
// consumed, delivered once, and that nothing else is delivered; the result
// of that check (Check) is part of every Result, and a run that fails it is
// reported as an error.
//
// Before each measured run, each system publishes Workload.Warmup records
// (default 100,000), unmeasured and unpaced, to partitions that the
// measured run's Prepare drops. Without it the first system of a run paid
// a fresh process's first use of memory, and those measured after it in
// the same process did not: on the benchmark VM a first touch of a page
// costs about 13 us (a 256 MiB buffer took 0.85 s to touch once and 2 ms
// the second time), and at 350,000 records/s a fresh cluster needed its
// first 0.4-0.6 s to catch up, which made the p99 of a 5 s fixed-rate run
// 100-120 ms; after a warm-up it was 21-30 ms on disk and 10-12 ms on
// tmpfs.
//
// # Targets
//
// A Target is one system in one durability setting: raftmq (acks as
// configured; it always fsyncs), JetStream with its default lazy sync (acknowledged before
// fsync) and JetStream with sync_interval: always. In-process clusters keep
// their data in a temporary directory on the real disk, never tmpfs if the
// caller can help it (see Config.DataDir).
//
// One more target is a baseline, not a queue: nats-fabric (StartFabric,
// --vs nats-fabric, produce only) carries the same records with raftmq's
// batch encoding, linger and window over the same path (a TCP client to
// the leader's server, the leader's copy to each follower over the peer
// transport through the server routes, an answer at a majority) on the same
// three routed embedded servers, and does nothing else: no Raft, no disk.
// Measured in the same run, it is the ceiling the messaging leaves on the
// machine, and raftmq's figure over it is the share its replication and
// storage leave of that ceiling.
//
// The other baseline is the disk (StartDisk, --vs disk, produce only): the
// same producers, batching, linger, window and batch cap as nats-fabric's,
// but each batch is appended to Workload.Replicas files per partition,
// under the run's data directory (the real disk, as raftmq's), one writer
// goroutine per file. A writer takes everything queued for it, writes it
// and issues one fdatasync (group commit, as a log does); a batch is
// acknowledged once a majority of its partition's writers have it durable,
// as acks=quorum is. No Raft, no NATS, no frame headers, offsets or index:
// the bytes written per record are the record batch's, as in raftmq's log.
// The files grow by appending (raftmq's log also appends once its Syncs
// average over 16 KiB, see segmentlog), and are removed at the next
// Prepare and at Close; the slowest writer may finish after the last
// acknowledgement, as a lagging follower does. Its label names the file
// system from the mount table ("fdatasync quorum of 3 files, ext4"; tmpfs
// says it is). Measured in the same run, it is the most a replicated log
// can make durable on this disk with this batching, and raftmq's figure
// over it (share_of_disk) is the share of the disk raftmq uses.
//
// The in-process raftmq cluster waits, after creating a run's topic, until
// every partition is led by its preferred leader (first replica): the
// brokers move a leadership the first election placed elsewhere a few
// seconds later, and that transfer in the middle of a run stalls produce
// requests for up to an election timeout. When the cluster stops, a line on
// stderr sums every broker's peer transport counters (frames sent and
// dropped, messages the NATS client dropped for a slow handler), produce
// requests by result and the produce and log sync latency percentiles
// (bucket bounds); RAFTMQ_BENCH_BROKER_LOG=file writes the brokers' logs
// (debug level) to file.
//
// # Concurrency
//
// Run and runOne are called from one goroutine; each producer and each
// partition reader runs on its own goroutine, and acknowledgement callbacks
// may arrive on any goroutine.
//
// This package is for benchmarks only; production code must not import it.
package bench
