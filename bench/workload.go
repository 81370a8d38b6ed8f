package bench

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Kind is what a run measures.
type Kind string

const (
	// KindProduce publishes records as fast as the window allows (or at
	// Workload.Rate) and measures publish-to-acknowledgement latency.
	KindProduce Kind = "produce"
	// KindConsume first fills the partitions (not timed), then replays every
	// partition from its first record and measures read throughput.
	KindConsume Kind = "consume"
	// KindE2E produces and consumes at the same time and measures the
	// latency from publish to delivery.
	KindE2E Kind = "e2e"
)

// ParseKind parses "produce", "consume" or "e2e".
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindProduce, KindConsume, KindE2E:
		return k, nil
	}
	return "", fmt.Errorf("bench: unknown workload %q (want produce, consume or e2e)", s)
}

// MinRecordSize is the smallest record: every record carries its producer,
// sequence number and intended send time (see payload.go).
const MinRecordSize = payloadHeaderSize

// Workload describes one benchmark. The zero value is not usable; start from
// DefaultWorkload.
type Workload struct {
	Kind Kind `json:"kind"`
	// Brokers is the cluster size (servers) of an in-process cluster.
	// Default 3.
	Brokers int `json:"brokers"`
	// Partitions is the number of partitions (JetStream: streams). Default 1.
	Partitions int `json:"partitions"`
	// Replicas is each partition's replica count. Default min(3, Brokers).
	Replicas int `json:"replicas"`
	// Producers is the number of producer clients, each with its own
	// connection. Producer p writes the partitions q with q mod Producers ==
	// p mod Producers, switching partition every partitionChunk records.
	// Default 1.
	Producers int `json:"producers"`
	// Consumers is the number of consumer clients; partition q is read by
	// consumer q mod Consumers. Default 1.
	Consumers int `json:"consumers"`
	// RecordSize is the size of each record's value in bytes, at least
	// MinRecordSize. Default 100.
	RecordSize int `json:"record_size"`
	// Count is the number of records to publish in total (split evenly
	// across producers). Either Count or Duration; default 200,000.
	Count int64 `json:"count,omitempty"`
	// Duration publishes for this long instead of a fixed count. At a
	// fixed Rate it publishes every record due in that time, even after
	// the deadline if the system held some of them back.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Rate is the target publish rate in records/s summed over producers;
	// 0 publishes as fast as Window allows. With a rate, latencies are
	// measured from each record's intended send time, so a stall counts
	// against every record that should have been sent during it
	// (coordinated omission corrected).
	Rate float64 `json:"rate,omitempty"`
	// Window bounds each producer's records published and not yet
	// acknowledged (JetStream: async publish max pending). 0 (the
	// default) is AutoWindow(RecordSize, Producers): the producers share
	// AutoWindowRecords records and AutoWindowBytes bytes in flight. 1
	// measures unloaded latency (one record in flight).
	Window int `json:"window"`
	// Linger is how long a raftmq producer's batch waits for more records
	// while an earlier batch of its partition is in flight (a partition with
	// nothing in flight sends at once; see clients.WithLinger). Default 5ms,
	// the SDK's default: against 1ms, at a fixed 350,000 records/s of 100 B
	// it gave p50 2.7-3.1 ms instead of 8.5-10 (fewer, larger produce
	// requests, each committed sooner), and the same at 20,000 records/s
	// and flat out. (JetStream has no client batching.)
	Linger time.Duration `json:"linger_ns"`
	// BatchBytes caps a raftmq producer batch (the SDK caps it further to
	// fit one NATS message). Default 1 MiB.
	BatchBytes int `json:"batch_bytes"`
	// MaxInFlight bounds a raftmq producer's batches in flight per
	// partition; 0 keeps the SDK default.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// Compression of raftmq batches: "none", "s2" or "zstd". Default none.
	Compression string `json:"compression"`
	// Acks of raftmq produce requests: "quorum", "leader" or "applied".
	// Default quorum.
	Acks string `json:"acks"`
	// Fsync is the raftmq brokers' fsync policy: "always" (fsync before a
	// replica counts toward the quorum), the only one raftmq has; it is a
	// parameter so every result names it.
	Fsync string `json:"fsync"`
	// DrainTimeout bounds how long consumers may lag behind after the last
	// acknowledgement before the run gives up. Default 60s.
	DrainTimeout time.Duration `json:"drain_timeout_ns"`
	// Warmup is how many records each run first publishes, unmeasured, as
	// fast as the automatic window allows, to partitions of its own that
	// the measured run's Prepare drops. A fresh process pays for its first
	// use of memory (on the benchmark VM a first touch of a page costs
	// about 13 us, so the first 100-200 MB of heap cost a second of CPU),
	// for growing buffers and pools, and for its first batches; without a
	// warm-up that lands on the first system measured, and the systems
	// measured after it in the same process inherit a warm heap. Every
	// system gets the same warm-up. Default 100,000; 0 turns it off.
	Warmup int64 `json:"warmup"`
}

// DefaultWorkload returns the defaults documented on Workload for kind.
func DefaultWorkload(kind Kind) Workload {
	return Workload{
		Kind:         kind,
		Brokers:      3,
		Partitions:   1,
		Replicas:     3,
		Producers:    1,
		Consumers:    1,
		RecordSize:   100,
		Count:        200_000,
		Linger:       5 * time.Millisecond,
		BatchBytes:   1 << 20,
		Compression:  "none",
		Acks:         "quorum",
		Fsync:        "always",
		DrainTimeout: 60 * time.Second,
		Warmup:       100_000,
	}
}

// Validate reports the first problem with w. It does not modify w.
func (w Workload) Validate() error {
	if _, err := ParseKind(string(w.Kind)); err != nil {
		return err
	}
	switch {
	case w.Brokers < 1:
		return fmt.Errorf("bench: brokers %d, want at least 1", w.Brokers)
	case w.Partitions < 1:
		return fmt.Errorf("bench: partitions %d, want at least 1", w.Partitions)
	case w.Replicas < 1 || w.Replicas > w.Brokers:
		return fmt.Errorf("bench: replicas %d, want 1..brokers (%d)", w.Replicas, w.Brokers)
	case w.Producers < 1:
		return fmt.Errorf("bench: producers %d, want at least 1", w.Producers)
	case w.Producers >= 1<<producerBits:
		return fmt.Errorf("bench: producers %d, at most %d", w.Producers, 1<<producerBits-1)
	case w.Consumers < 1:
		return fmt.Errorf("bench: consumers %d, want at least 1", w.Consumers)
	case w.RecordSize < MinRecordSize:
		return fmt.Errorf("bench: record size %d, want at least %d", w.RecordSize, MinRecordSize)
	case w.Count < 0 || w.Duration < 0:
		return errors.New("bench: count and duration must not be negative")
	case w.Count == 0 && w.Duration == 0:
		return errors.New("bench: set a count or a duration")
	case w.Count > 0 && w.Duration > 0:
		return errors.New("bench: set a count or a duration, not both")
	case w.Count > 0 && w.Count < int64(w.Producers):
		return fmt.Errorf("bench: count %d is less than producers %d", w.Count, w.Producers)
	case w.Kind == KindConsume && w.Duration > 0:
		return errors.New("bench: the consume workload replays a fixed count; set count, not duration")
	case w.Rate < 0:
		return fmt.Errorf("bench: rate %v is negative", w.Rate)
	case math.IsNaN(w.Rate) || math.IsInf(w.Rate, 0):
		return fmt.Errorf("bench: rate %v, want a finite number of records/s (0: as fast as the window allows)", w.Rate)
	case w.Window < 0:
		return fmt.Errorf("bench: window %d, want at least 1 (0: auto)", w.Window)
	case w.Linger < 0:
		return fmt.Errorf("bench: linger %v is negative", w.Linger)
	case w.MaxInFlight < 0:
		return fmt.Errorf("bench: max in flight %d is negative", w.MaxInFlight)
	case w.BatchBytes < 0:
		return fmt.Errorf("bench: batch bytes %d is negative", w.BatchBytes)
	case w.Warmup < 0:
		return fmt.Errorf("bench: warm-up %d records is negative", w.Warmup)
	case w.DrainTimeout <= 0:
		return fmt.Errorf("bench: drain timeout %v, want > 0", w.DrainTimeout)
	}
	switch w.Compression {
	case "none", "s2", "zstd":
	default:
		return fmt.Errorf("bench: compression %q, want none, s2 or zstd", w.Compression)
	}
	switch w.Acks {
	case "quorum", "leader", "applied":
	default:
		return fmt.Errorf("bench: acks %q, want quorum, leader or applied", w.Acks)
	}
	if w.Fsync != "always" {
		return fmt.Errorf("bench: fsync %q: raftmq always fsyncs before a replica counts toward the quorum, so always is the only policy", w.Fsync)
	}
	return nil
}

// partitionChunk is how many consecutive records a producer sends to one
// partition before it moves to its next one (when it owns several), so
// client-side batches fill up as with a sticky partitioner.
const partitionChunk = 1000

// ownedPartitions lists the partitions producer writes.
func (w Workload) ownedPartitions(producer int) []int {
	var owned []int
	if w.Partitions <= w.Producers {
		return append(owned, producer%w.Partitions)
	}
	for q := producer; q < w.Partitions; q += w.Producers {
		owned = append(owned, q)
	}
	return owned
}

// producerCount is how many records producer publishes in count mode.
func (w Workload) producerCount(producer int) int64 {
	n := w.Count / int64(w.Producers)
	if int64(producer) < w.Count%int64(w.Producers) {
		n++
	}
	return n
}

// Bounds of the automatic window (Workload.Window 0), shared by the
// producers of a run.
const (
	// AutoWindowBytes bounds the record values in flight (a Kafka
	// producer's buffer.memory plays this role).
	AutoWindowBytes = 16 << 20
	// AutoWindowRecords bounds the records in flight. A durable publish is
	// acknowledged after two fsyncs in a row (leader and follower, each
	// joining the next group commit), several milliseconds on a loaded
	// machine, so a window of 4096 per producer (the old default) capped
	// one producer at about 4096 records per round trip (542,885 rec/s at
	// p50 5.5 ms). Measured with 100 B records on a loaded 2-core
	// machine, one producer with 4096 / 8192 / 16384 / 32768 in flight
	// gave 0.20 / 0.25 / 0.33 / 0.20 million rec/s, and four producers
	// with 16384 each used 35% more CPU per record than with 4096 each:
	// past about 16384 records in flight the batches reach the 1 MiB cap
	// and every copy of them (NATS, Raft, log) costs more CPU per byte.
	AutoWindowRecords = 16384
)

// AutoWindow is each producer's window when Workload.Window is 0, for
// records of recordSize bytes and producers producers:
// min(AutoWindowRecords, AutoWindowBytes/recordSize) / producers, at
// least 1.
func AutoWindow(recordSize, producers int) int {
	total := min(AutoWindowRecords, AutoWindowBytes/max(1, recordSize))
	return max(1, total/max(1, producers))
}

// window is the records in flight per producer: Window, or AutoWindow
// when Window is 0.
func (w Workload) window() int {
	if w.Window > 0 {
		return w.Window
	}
	return AutoWindow(w.RecordSize, w.Producers)
}
