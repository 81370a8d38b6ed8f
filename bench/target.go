package bench

import "context"

// A Target is one system under test in one setting (for example JetStream
// with sync_interval always), running and ready for workloads. The driver
// calls Prepare before every run, then creates producers and readers; it
// calls Close once at the end.
type Target interface {
	// Info names the system and setting and states what an acknowledgement
	// guarantees.
	Info() TargetInfo
	// ConsumerKinds lists the ways the target can consume (for example
	// "ordered" and "pull"); consume and e2e runs measure each.
	ConsumerKinds() []string
	// Prepare creates fresh, empty partitions for a run of w, dropping those
	// of an earlier run.
	Prepare(ctx context.Context, w Workload) error
	// NewProducer returns producer number id. onAck is called once per
	// record handed to Send (with a non-nil error if it failed), from any
	// goroutine, with the payload slice given to Send; the target must not
	// touch that slice after calling onAck.
	NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error)
	// NewReader returns a reader of partition from its first record, using
	// consumer client number consumer and consumer kind (one of
	// ConsumerKinds).
	NewReader(ctx context.Context, kind string, consumer, partition int) (Reader, error)
	// Close stops everything the target started.
	Close() error
}

// AckFunc receives a publish outcome; see Target.NewProducer.
type AckFunc func(payload []byte, err error)

// TargetInfo describes a target for reports.
type TargetInfo struct {
	// System is "raftmq" or "jetstream".
	System string `json:"system"`
	// Setting names the durability setting, for example "fsync-quorum",
	// "lazy" or "sync_always".
	Setting string `json:"setting"`
	// Durability says in words what an acknowledged record survives.
	Durability string `json:"durability"`
	// Settings are the durability-relevant knobs, for JSON output.
	Settings map[string]string `json:"settings"`
	// Versions of the software under test.
	Versions map[string]string `json:"versions"`
}

// Producer publishes records asynchronously.
type Producer interface {
	// Send publishes payload to partition. It may block for flow control;
	// the outcome arrives at the producer's AckFunc. A non-nil error means
	// the record was not sent and no AckFunc call follows.
	Send(partition int, payload []byte) error
	// Flush returns once every record sent so far was acknowledged or failed.
	Flush(ctx context.Context) error
	Close() error
}

// Reader delivers one partition's records in order.
type Reader interface {
	// Read calls fn for each record, from one goroutine at a time, until fn
	// returns false, ctx ends (a nil error) or reading fails. fn must not
	// keep payload.
	Read(ctx context.Context, fn func(payload []byte) bool) error
	Close() error
}
