//go:build linux

package chaos

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/clients"
)

var (
	flagRounds     = flag.Int("chaos.rounds", 3, "leader kills (SIGKILL, then restart) in TestKillLeaderWhileProducing")
	flagPartitions = flag.Int("chaos.partitions", 2, "partitions of the test topic, each replicated on all three brokers")
	flagLogDir     = flag.String("chaos.logs", "", "keep the brokers' logs in a new directory under this `directory` (default: a temporary one, printed on failure)")
	flagTimeout    = flag.Duration("chaos.timeout", 0, "bound on one run, the binary's build excluded (0: 40s + 12s per round)")
)

const (
	topicName   = "chaos"
	clusterSize = 3
	// progressStep is how many more acknowledged records every partition
	// needs before the cluster counts as making progress.
	progressStep = 10
	// requestTimeout bounds one request of the test's clients: a produce
	// sent to a leader that was just killed is retried after it.
	requestTimeout = 3 * time.Second
	// minimumPause keeps a SIGSTOPped follower stopped for a few election
	// timeouts (1s by default), so its timers fire when it resumes.
	minimumPause = 2500 * time.Millisecond
	pollInterval = 100 * time.Millisecond
)

// TestKillLeaderWhileProducing runs three `raftmq serve` processes, produces
// with per-record acknowledgements to every partition, and meanwhile
// SIGKILLs and restarts partition leaders and SIGSTOPs a follower; then it
// reads every partition back and checks the history (see checkPartition).
func TestKillLeaderWhileProducing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three broker processes; skipped with -short")
	}
	rounds, partitions := *flagRounds, *flagPartitions
	if rounds < 0 || partitions < 1 {
		t.Fatalf("-chaos.rounds %d, -chaos.partitions %d: need rounds >= 0 and partitions >= 1", rounds, partitions)
	}
	binary := raftmqBinary(t)
	budget := *flagTimeout
	if budget == 0 {
		budget = 40*time.Second + time.Duration(rounds)*12*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	t.Cleanup(cancel)
	started := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("%6.2fs "+format, append([]any{time.Since(started).Seconds()}, args...)...)
	}

	cluster := startProcessCluster(t, binary, clusterSize)
	run := &chaosRun{t: t, ctx: ctx, cluster: cluster, partitions: partitions, logf: logf}
	run.waitListening()
	run.admin = run.connect("chaos-admin")
	run.waitReady()
	run.createTopic()
	logf("cluster ready, topic %q with %d partitions on %d replicas", topicName, partitions, clusterSize)

	work := startWorkload(t, ctx, partitions, run.connect("chaos-producer"), run.connect("chaos-consumer"))
	run.work = work
	run.waitProgress("first records")
	for round := range rounds {
		run.killLeaderRound(round)
		if round == 0 {
			run.pauseFollower()
		}
	}
	if rounds == 0 {
		run.pauseFollower()
	}
	run.waitAllAlive()
	run.waitProgress("records after the last fault")
	run.waitConsumerCaughtUp()
	work.stop()
	logf("workload stopped: %s", work.summary())

	var failed bool
	for partition := range uint32(partitions) {
		history := run.readBack(partition)
		verdict := checkPartition(history)
		logf("partition %d: %d records in [%d, %d), %d acknowledged, %d present without acknowledgement, %d served to the live consumer",
			partition, len(history.log), history.logStart, history.highWatermark, len(history.acked), verdict.unackedPresent, len(history.observed))
		for _, violation := range verdict.violations {
			t.Errorf("%s", violation)
			failed = true
		}
		for _, dup := range verdict.duplicates {
			t.Errorf("partition %d: duplicate %v despite the idempotent producer; its produce took %v",
				partition, dup, work.produceTime(partition, dup.seq))
		}
	}
	for _, violation := range work.consumerViolations() {
		t.Errorf("live consumer: %s", violation)
		failed = true
	}
	if !failed {
		run.waitReplicasConverge()
	}
	logf("done")
}

// chaosRun is the state of one TestKillLeaderWhileProducing run.
type chaosRun struct {
	t          *testing.T
	ctx        context.Context
	cluster    *processCluster
	partitions int
	admin      *clients.Client
	work       *workload
	logf       func(format string, args ...any)
}

// connect opens a client to every broker. DontRandomize makes every client
// start on broker 1 and fail over in list order, so the test knows which
// brokers carry client connections.
func (r *chaosRun) connect(name string) *clients.Client {
	r.t.Helper()
	client, err := clients.Connect(r.ctx, r.cluster.urls(),
		clients.WithName(name),
		clients.WithRequestTimeout(requestTimeout),
		clients.WithNATSOptions(nats.DontRandomize()))
	if err != nil {
		r.t.Fatalf("connect %s: %v", name, err)
	}
	r.t.Cleanup(func() { client.Close() })
	return client
}

// waitFor polls condition until it holds, failing the test when the run's
// deadline passes first or a broker process crashed. condition returns
// what it saw, for the failure message.
func (r *chaosRun) waitFor(what string, condition func() (bool, string)) {
	r.t.Helper()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	last := ""
	for {
		if err := r.cluster.exitedEarly(); err != nil {
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		ok, seen := condition()
		if ok {
			return
		}
		last = seen
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("timed out waiting for %s (a hang?): last seen: %s", what, last)
		case <-ticker.C:
		}
	}
}

func (r *chaosRun) status() (clients.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	return r.admin.ClusterStatus(ctx)
}

func brokerAlive(status clients.ClusterStatus, id uint64) bool {
	for _, b := range status.Brokers {
		if b.ID == id {
			return b.Alive
		}
	}
	return false
}

func partitionLeader(status clients.ClusterStatus, partition uint32) uint64 {
	for _, p := range status.Partitions {
		if p.Topic == topicName && p.Partition == partition {
			return p.Leader
		}
	}
	return 0
}

// waitListening waits until every broker's NATS server accepts connections.
func (r *chaosRun) waitListening() {
	for _, b := range r.cluster.brokers {
		r.waitFor(fmt.Sprintf("broker %d's NATS server to listen", b.id), func() (bool, string) {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.natsPort), time.Second)
			if err != nil {
				return false, err.Error()
			}
			conn.Close()
			return true, ""
		})
	}
}

func (r *chaosRun) waitReady() {
	r.waitFor("every broker alive and a controller leader", func() (bool, string) {
		status, err := r.status()
		if err != nil {
			return false, err.Error()
		}
		for _, b := range r.cluster.brokers {
			if !brokerAlive(status, b.id) {
				return false, fmt.Sprintf("%+v", status.Brokers)
			}
		}
		return status.ControllerLeader != 0, fmt.Sprintf("controller leader %d", status.ControllerLeader)
	})
}

func (r *chaosRun) waitAllAlive() {
	r.waitFor("every broker alive", func() (bool, string) {
		status, err := r.status()
		if err != nil {
			return false, err.Error()
		}
		for _, b := range r.cluster.brokers {
			if !brokerAlive(status, b.id) {
				return false, fmt.Sprintf("%+v", status.Brokers)
			}
		}
		return true, ""
	})
}

// createTopic creates the topic (retrying until a broker accepts it) and
// waits until every partition has a leader.
func (r *chaosRun) createTopic() {
	r.waitFor("the topic created", func() (bool, string) {
		ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
		defer cancel()
		if info, err := r.admin.DescribeTopic(ctx, topicName); err == nil && len(info.Partitions) == r.partitions {
			return true, ""
		}
		_, err := r.admin.CreateTopic(ctx, topicName, clients.WithPartitions(r.partitions), clients.WithReplicas(clusterSize))
		return false, fmt.Sprint("create: ", err)
	})
	var leaders []uint64
	r.waitFor("a leader for every partition", func() (bool, string) {
		status, err := r.status()
		if err != nil {
			return false, err.Error()
		}
		leaders = leaders[:0]
		for partition := range uint32(r.partitions) {
			leader := partitionLeader(status, partition)
			if leader == 0 {
				return false, fmt.Sprintf("%+v", status.Partitions)
			}
			leaders = append(leaders, leader)
		}
		return true, ""
	})
	r.logf("partition leaders (by partition): %v", leaders)
}

// waitProgress waits until every partition has progressStep more
// acknowledged records than now.
func (r *chaosRun) waitProgress(what string) {
	r.t.Helper()
	start := r.work.ackCounts()
	r.waitFor(fmt.Sprintf("%d more acknowledged records on every partition (%s)", progressStep, what), func() (bool, string) {
		now := r.work.ackCounts()
		for partition := range now {
			if now[partition] < start[partition]+progressStep {
				return false, fmt.Sprintf("acknowledged per partition: %v at start, %v now; %s", start, now, r.work.summary())
			}
		}
		return true, ""
	})
}

// waitConsumerCaughtUp waits until the live consumer has been served every
// partition up to the highest acknowledged offset: it survived the faults.
func (r *chaosRun) waitConsumerCaughtUp() {
	r.t.Helper()
	target := r.work.highestAcked()
	r.waitFor(fmt.Sprintf("the live consumer to reach offsets %v", target), func() (bool, string) {
		consumed := r.work.consumedOffsets()
		for partition := range target {
			if consumed[partition] < target[partition] {
				return false, fmt.Sprintf("consumed up to %v; %s", consumed, r.work.summary())
			}
		}
		return true, ""
	})
}

// brokerLeads asks a broker's own metrics whether it leads partition.
func (r *chaosRun) brokerLeads(b *brokerProcess, partition uint32) (bool, error) {
	samples, err := r.cluster.metrics(r.ctx, b, "raftmq_partition_leader", map[string]string{"topic": topicName}, "partition")
	if err != nil {
		return false, err
	}
	return samples[strconv.Itoa(int(partition))] == 1, nil
}

// currentLeader waits until the cluster status names a live leader of
// partition that its own metrics confirm, and returns it.
func (r *chaosRun) currentLeader(partition uint32, not uint64) *brokerProcess {
	r.t.Helper()
	var leader *brokerProcess
	r.waitFor(fmt.Sprintf("a confirmed leader of partition %d other than broker %d", partition, not), func() (bool, string) {
		status, err := r.status()
		if err != nil {
			return false, err.Error()
		}
		id := partitionLeader(status, partition)
		if id == 0 || id == not || !brokerAlive(status, id) || !r.cluster.broker(id).running() {
			return false, fmt.Sprintf("status leader %d, brokers %+v", id, status.Brokers)
		}
		leads, err := r.brokerLeads(r.cluster.broker(id), partition)
		if err != nil || !leads {
			return false, fmt.Sprintf("broker %d named leader but its metrics disagree (%v)", id, err)
		}
		leader = r.cluster.broker(id)
		return true, ""
	})
	return leader
}

// waitCaughtUp waits until broker b is alive in the cluster status and its
// replica of every partition has a high watermark at or past the highest
// offset acknowledged when the wait began.
func (r *chaosRun) waitCaughtUp(b *brokerProcess) {
	r.t.Helper()
	target := r.work.highestAcked()
	r.waitFor(fmt.Sprintf("broker %d alive and caught up to %v", b.id, target), func() (bool, string) {
		status, err := r.status()
		if err != nil {
			return false, err.Error()
		}
		if !brokerAlive(status, b.id) {
			return false, "not alive in the cluster status"
		}
		samples, err := r.cluster.metrics(r.ctx, b, "raftmq_partition_high_watermark", map[string]string{"topic": topicName}, "partition")
		if err != nil {
			return false, err.Error()
		}
		for partition, want := range target {
			if samples[strconv.Itoa(partition)] < float64(want) {
				return false, fmt.Sprintf("high watermarks %v", samples)
			}
		}
		return true, ""
	})
}

// killLeaderRound SIGKILLs the leader of one partition, checks that the
// cluster elects another and keeps acknowledging records, then restarts
// the broker on its data directory and waits until it has caught up.
func (r *chaosRun) killLeaderRound(round int) {
	r.t.Helper()
	partition := uint32(round % r.partitions)
	r.waitProgress(fmt.Sprintf("before round %d", round+1))
	victim := r.currentLeader(partition, 0)
	r.logf("round %d: SIGKILL broker %d, leader of partition %d; acknowledged so far %v", round+1, victim.id, partition, r.work.ackCounts())
	r.cluster.kill(r.ctx, victim)
	next := r.currentLeader(partition, victim.id)
	r.logf("round %d: broker %d leads partition %d", round+1, next.id, partition)
	r.waitProgress(fmt.Sprintf("round %d, broker %d down", round+1, victim.id))
	r.cluster.start(victim)
	r.logf("round %d: restarted broker %d", round+1, victim.id)
	r.waitCaughtUp(victim)
	r.logf("round %d: broker %d caught up", round+1, victim.id)
}

// pauseFollower SIGSTOPs a broker that leads no partition for at least
// minimumPause, checks the others keep acknowledging records meanwhile
// (unless the paused broker carries a client's NATS connection), then
// SIGCONTs it and waits until it has caught up.
func (r *chaosRun) pauseFollower() {
	r.t.Helper()
	var status clients.ClusterStatus
	r.waitFor("a cluster status", func() (bool, string) {
		var err error
		status, err = r.status()
		return err == nil, fmt.Sprint(err)
	})
	leaders := map[uint64]bool{}
	for partition := range uint32(r.partitions) {
		leaders[partitionLeader(status, partition)] = true
	}
	hostsClient := r.work.clientBrokers(r.cluster)
	hostsClient[r.cluster.brokerOfURL(r.admin.Conn().ConnectedUrl())] = true
	var target *brokerProcess
	best := -1
	for _, b := range r.cluster.brokers {
		if leaders[b.id] {
			continue
		}
		score := 0
		if !hostsClient[b.id] {
			score += 2
		}
		if status.ControllerLeader != b.id {
			score++
		}
		if score > best {
			target, best = b, score
		}
	}
	if target == nil {
		r.logf("pause: every broker leads a partition; pausing broker 1 anyway")
		target = r.cluster.brokers[0]
	}
	requireProgress := !hostsClient[target.id]
	r.logf("pause: SIGSTOP broker %d (partition leaders %v, controller leader %d, carries a client connection: %v)",
		target.id, keys(leaders), status.ControllerLeader, !requireProgress)
	r.cluster.signal(target, syscall.SIGSTOP)
	resumed := false
	r.t.Cleanup(func() {
		if !resumed && target.running() {
			target.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	pausedAt := time.Now()
	start := r.work.ackCounts()
	r.waitFor(fmt.Sprintf("progress while broker %d is stopped", target.id), func() (bool, string) {
		if time.Since(pausedAt) < minimumPause {
			return false, "pausing"
		}
		if !requireProgress {
			return true, ""
		}
		now := r.work.ackCounts()
		for partition := range now {
			if now[partition] < start[partition]+progressStep {
				return false, fmt.Sprintf("acknowledged %v at pause, %v now; %s", start, now, r.work.summary())
			}
		}
		return true, ""
	})
	r.cluster.signal(target, syscall.SIGCONT)
	resumed = true
	r.logf("pause: SIGCONT broker %d after %v; acknowledged %v at pause, %v now",
		target.id, time.Since(pausedAt).Round(time.Millisecond), start, r.work.ackCounts())
	r.waitCaughtUp(target)
	r.logf("pause: broker %d caught up", target.id)
}

func keys(m map[uint64]bool) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// brokerOfURL maps a NATS client URL to the broker serving it (0 if none).
func (c *processCluster) brokerOfURL(url string) uint64 {
	for _, b := range c.brokers {
		if strings.HasSuffix(url, ":"+strconv.Itoa(b.natsPort)) {
			return b.id
		}
	}
	return 0
}

// readBack reads one partition from earliest to the high watermark with a
// fresh consumer and returns its history.
func (r *chaosRun) readBack(partition uint32) partitionHistory {
	r.t.Helper()
	history := r.work.history(partition)
	maxAcked := uint64(0)
	if n := len(history.acked); n > 0 {
		maxAcked = history.acked[n-1].offset + 1
	}
	var offsets clients.Offsets
	r.waitFor(fmt.Sprintf("partition %d's high watermark to cover the acknowledged offsets (< %d)", partition, maxAcked), func() (bool, string) {
		ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
		defer cancel()
		var err error
		offsets, err = r.admin.ListOffsets(ctx, topicName, partition, clients.Earliest())
		if err != nil {
			return false, err.Error()
		}
		return offsets.HighWatermark >= maxAcked, fmt.Sprintf("%+v", offsets)
	})
	history.logStart, history.highWatermark = offsets.LogStart, offsets.HighWatermark

	consumer, err := r.admin.NewConsumer(clients.WithFetchMaxWait(100 * time.Millisecond))
	if err != nil {
		r.t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(r.ctx, topicName, clients.AtOffset(offsets.LogStart), partition); err != nil {
		r.t.Fatalf("assign partition %d for the final read: %v", partition, err)
	}
	next := offsets.LogStart
	for next < offsets.HighWatermark {
		records, err := consumer.Poll(r.ctx)
		if err != nil {
			r.t.Fatalf("final read of partition %d stopped at offset %d of [%d, %d): %v",
				partition, next, offsets.LogStart, offsets.HighWatermark, err)
		}
		for _, record := range records {
			if record.Offset >= offsets.HighWatermark {
				continue
			}
			history.log = append(history.log, loggedRecord{offset: record.Offset, value: string(record.Value)})
			next = record.Offset + 1
		}
	}
	return history
}

// waitReplicasConverge waits until every broker's replica of every
// partition reports the leader's high watermark.
func (r *chaosRun) waitReplicasConverge() {
	for partition := range uint32(r.partitions) {
		var offsets clients.Offsets
		var err error
		r.waitFor(fmt.Sprintf("partition %d's offsets", partition), func() (bool, string) {
			ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
			defer cancel()
			offsets, err = r.admin.ListOffsets(ctx, topicName, partition, clients.Latest())
			return err == nil, fmt.Sprint(err)
		})
		for _, b := range r.cluster.brokers {
			r.waitFor(fmt.Sprintf("broker %d's replica of partition %d at high watermark %d", b.id, partition, offsets.HighWatermark), func() (bool, string) {
				samples, err := r.cluster.metrics(r.ctx, b, "raftmq_partition_high_watermark", map[string]string{"topic": topicName}, "partition")
				if err != nil {
					return false, err.Error()
				}
				got := samples[strconv.Itoa(int(partition))]
				return got >= float64(offsets.HighWatermark), fmt.Sprint(got)
			})
		}
	}
}

// workload is the producers (one per partition, one synchronous produce at
// a time) and the live consumer.
type workload struct {
	cancel   context.CancelFunc
	stopOnce sync.Once
	wg       sync.WaitGroup
	producer *clients.Producer
	clients  []*clients.Client

	mu          sync.Mutex
	acked       [][]ackedRecord
	slow        []map[uint64]time.Duration // seq -> produce time, for the slow ones
	issued      []uint64
	failures    []int
	lastFailure []error
	observed    []map[uint64]string
	violations  []string
	consumed    []uint64 // per partition: the offset after the last record the live consumer got
	pollErrors  int
	lastPollErr error
}

func startWorkload(t *testing.T, ctx context.Context, partitions int, producerClient, consumerClient *clients.Client) *workload {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &workload{
		cancel:      cancel,
		clients:     []*clients.Client{producerClient, consumerClient},
		acked:       make([][]ackedRecord, partitions),
		issued:      make([]uint64, partitions),
		failures:    make([]int, partitions),
		lastFailure: make([]error, partitions),
		observed:    make([]map[uint64]string, partitions),
		slow:        make([]map[uint64]time.Duration, partitions),
		consumed:    make([]uint64, partitions),
	}
	for i := range w.observed {
		w.observed[i] = map[uint64]string{}
		w.slow[i] = map[uint64]time.Duration{}
	}
	producer, err := producerClient.NewProducer(
		clients.WithPartitioner(clients.ManualPartitioner()),
		clients.WithLinger(0),
		clients.WithDeliveryTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	w.producer = producer
	consumer, err := consumerClient.NewConsumer(clients.WithFetchMaxWait(200 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for partition := range uint32(partitions) {
		if err := consumer.Seek(ctx, topicName, partition, clients.AtOffset(0)); err != nil {
			t.Fatalf("live consumer: assign partition %d: %v", partition, err)
		}
	}
	t.Cleanup(func() {
		w.stop()
		consumer.Close()
	})
	for partition := range uint32(partitions) {
		w.wg.Go(func() { w.produce(ctx, partition) })
	}
	w.wg.Go(func() { w.consume(ctx, consumer, partitions) })
	return w
}

// stop ends the producers and the consumer and waits for them.
func (w *workload) stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		w.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.producer.Close(ctx)
	})
}

func (w *workload) produce(ctx context.Context, partition uint32) {
	for seq := uint64(0); ctx.Err() == nil; seq++ {
		w.mu.Lock()
		w.issued[partition] = seq + 1
		w.mu.Unlock()
		record := &clients.Record{Topic: topicName, Partition: partition, Value: recordValue(partition, seq)}
		started := time.Now()
		err := w.producer.ProduceSync(ctx, record).FirstErr()
		took := time.Since(started)
		w.mu.Lock()
		if took > requestTimeout/2 {
			w.slow[partition][seq] = took
		}
		switch {
		case err == nil:
			w.acked[partition] = append(w.acked[partition], ackedRecord{seq: seq, offset: record.Offset})
		case ctx.Err() == nil:
			w.failures[partition]++
			w.lastFailure[partition] = err
		}
		w.mu.Unlock()
	}
}

// consume polls every partition from offset 0 and remembers what it was
// served; within a partition each record must follow the previous one.
func (w *workload) consume(ctx context.Context, consumer *clients.Consumer, partitions int) {
	next := w.consumed // guarded by mu, written only here
	for ctx.Err() == nil {
		records, err := consumer.Poll(ctx)
		w.mu.Lock()
		for _, record := range records {
			p := record.Partition
			if record.Offset != next[p] {
				w.violations = append(w.violations, fmt.Sprintf("partition %d: served offset %d where %d was due", p, record.Offset, next[p]))
			}
			w.observed[p][record.Offset] = string(record.Value)
			next[p] = record.Offset + 1
		}
		if err != nil && ctx.Err() == nil {
			w.pollErrors++
			w.lastPollErr = err
		}
		w.mu.Unlock()
		var partitionError *clients.PartitionError
		if err != nil && ctx.Err() == nil && errors.As(err, &partitionError) {
			// A fetcher stopped for good: restart every partition where it
			// left off (Seek drops nothing already returned).
			w.mu.Lock()
			restartAt := append([]uint64(nil), next...)
			w.mu.Unlock()
			for p := range uint32(partitions) {
				if err := consumer.Seek(ctx, topicName, p, clients.AtOffset(restartAt[p])); err != nil && ctx.Err() == nil {
					w.mu.Lock()
					w.violations = append(w.violations, fmt.Sprintf("partition %d: seek to %d: %v", p, restartAt[p], err))
					w.mu.Unlock()
				}
			}
		}
	}
}

func (w *workload) ackCounts() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	counts := make([]int, len(w.acked))
	for i, acked := range w.acked {
		counts[i] = len(acked)
	}
	return counts
}

func (w *workload) consumedOffsets() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]uint64(nil), w.consumed...)
}

// highestAcked returns, per partition, the offset after the last
// acknowledged record.
func (w *workload) highestAcked() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]uint64, len(w.acked))
	for i, acked := range w.acked {
		if n := len(acked); n > 0 {
			out[i] = acked[n-1].offset + 1
		}
	}
	return out
}

func (w *workload) history(partition uint32) partitionHistory {
	w.mu.Lock()
	defer w.mu.Unlock()
	observed := make(map[uint64]string, len(w.observed[partition]))
	for offset, value := range w.observed[partition] {
		observed[offset] = value
	}
	return partitionHistory{
		partition: partition,
		acked:     append([]ackedRecord(nil), w.acked[partition]...),
		issued:    w.issued[partition],
		failures:  w.failures[partition],
		observed:  observed,
	}
}

// produceTime is how long the produce of seq took, if it was slow (more
// than half the request timeout), else a note saying it was fast.
func (w *workload) produceTime(partition uint32, seq uint64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if took, ok := w.slow[partition][seq]; ok {
		return took.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("under %v", requestTimeout/2)
}

func (w *workload) consumerViolations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// clientBrokers returns the brokers whose NATS servers carry the
// workload's client connections.
func (w *workload) clientBrokers(c *processCluster) map[uint64]bool {
	out := map[uint64]bool{}
	for _, client := range w.clients {
		out[c.brokerOfURL(client.Conn().ConnectedUrl())] = true
	}
	return out
}

func (w *workload) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for p := range w.acked {
		part := fmt.Sprintf("partition %d: %d issued, %d acknowledged, %d failed", p, w.issued[p], len(w.acked[p]), w.failures[p])
		if w.lastFailure[p] != nil {
			part += fmt.Sprintf(" (last: %v)", w.lastFailure[p])
		}
		parts = append(parts, part)
	}
	parts = append(parts, fmt.Sprintf("live consumer: %d poll errors", w.pollErrors))
	if w.lastPollErr != nil {
		parts[len(parts)-1] += fmt.Sprintf(" (last: %v)", w.lastPollErr)
	}
	return strings.Join(parts, "; ")
}
