// Package chaos holds a real-process fault test of raftmq; it has no
// non-test code.
//
// TestKillLeaderWhileProducing builds the raftmq binary once, starts three
// `raftmq serve` processes on loopback ports it picks (embedded NATS servers
// joined by routes, one data directory each, the controller bootstrapped on
// all three) and creates a topic whose partitions are replicated on all
// three brokers. Then, while one producer per partition publishes records
// one at a time with acks=quorum (each record carries its partition and a
// sequence number) and a consumer reads every partition as it grows, it:
//
//   - SIGKILLs the leader of a partition (found through the cluster status
//     and confirmed by the broker's own metrics), waits until another broker
//     leads it and every partition acknowledges new records, restarts the
//     killed broker on its data directory and waits until its replicas have
//     caught up; -chaos.rounds times (default 3), rotating the partition;
//   - once, SIGSTOPs a broker that leads no partition for a few election
//     timeouts, requiring progress meanwhile, then SIGCONTs it.
//
// Waits are on conditions (cluster status, /metrics, acknowledgement
// counts), each bounded by the run's deadline: a hang fails the test and
// names what it waited for.
//
// # What it proves
//
// At the end every partition is read from its log start to its high
// watermark and checked (checkPartition; TestCheckPartition shows each check
// can fail):
//
//   - no acknowledged record is lost: each is in the log at exactly the
//     offset its acknowledgement named;
//   - offsets are dense and each holds one record;
//   - no reordering: within a partition the producer's sequence numbers
//     never decrease along the log, and acknowledgements come in offset
//     order;
//   - nothing is served before it is committed: every record the concurrent
//     consumer was served is in the final log with the same bytes at the
//     same offset, and the consumer saw each partition's offsets in order
//     without gaps;
//   - the cluster stays available: with one broker killed or stopped every
//     partition keeps acknowledging records, and the concurrent consumer
//     catches up to the last acknowledged offset after the faults;
//   - after the faults every replica reaches the leader's high watermark.
//
// SIGKILL loses no page-cache data, so this test does not prove that the
// log fsyncs before acknowledging; the crash tests of segmentlog and raft,
// which drop unsynced writes, cover that.
//
// Duplicates are failures: the SDK's producer is idempotent by default (a
// retry of a batch the partition already holds is answered with its
// original offset), so each partition's sequence numbers must increase by
// exactly one along the log, skipping only records whose produce failed.
// Records present without an acknowledgement (their produce failed or the
// run ended) are allowed.
//
// # Running it
//
// It runs with the rest of the module (`go test ./...`); -short skips it.
// It needs Linux (SIGSTOP, and Pdeathsig so brokers die with the test
// binary) and the go tool on PATH. One run takes about a minute; the
// build of the binary is bounded separately and comes first. Longer runs:
//
//	go test ./test/chaos -run TestKillLeaderWhileProducing -v -chaos.rounds=20
//	go test ./test/chaos -count=10 -chaos.partitions=4
//
// -chaos.timeout bounds one run after the build (default 40s plus 12s per
// round). On failure the last lines of every broker's log are printed;
// -chaos.logs DIR keeps the full logs. The -v output is a timeline (which
// broker was killed, stopped, restarted, and when) to reproduce a failure
// from.
package chaos
