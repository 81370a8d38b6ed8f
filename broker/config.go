package broker

import (
	"errors"
	"fmt"
	"github.com/cockroachdb/pebble/v2/vfs"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/protocol"
	"github.com/raftmq/raftmq/segmentlog"
	"github.com/raftmq/raftmq/transport"
)

// Config configures one broker. Start from DefaultConfig; Validate does not
// modify it.
type Config struct {
	// ID is this broker's id, unique in the cluster, non-zero. Default 1.
	ID uint64
	// DataDir holds the broker's data: the Pebble state database, the
	// controller log and one directory per partition replica under
	// topics/. Default "./raftmq-data".
	DataDir string
	// Bootstrap lists the broker ids that run the controller Raft group. All
	// brokers of a cluster must list the same ids. Default [ID] (a
	// single-broker cluster).
	Bootstrap []uint64
	// ClusterName prefixes every NATS subject. Default "raftmq".
	ClusterName string

	// NATS says how the broker reaches NATS. With NATS.Embedded set the
	// broker runs that NATS server in-process and connects to it; otherwise
	// it connects to NATS.Connect.URLs (an existing NATS system).
	NATS NATSConfig

	// MaxBatchBytes is the largest record batch a produce request may carry.
	// Default 1 MiB. It is lowered at start to what fits in one NATS
	// message of the connection's max payload.
	MaxBatchBytes int
	// MaxRecordBytes is the largest single record value+key a plain publish
	// may carry and, for uncompressed batches, the largest record in a
	// batch. Default 1 MiB.
	MaxRecordBytes int
	// DefaultPartitions is the partition count of a topic created without
	// one. Default 1.
	DefaultPartitions int
	// MaxPartitions bounds the partitions of one topic. Default 1024.
	MaxPartitions int
	// ProduceTimeout is how long a produce waits for its acknowledgement when
	// the request sets no timeout. Default 10s.
	ProduceTimeout time.Duration
	// MaxFetchWait caps a fetch's long poll. Default 30s.
	MaxFetchWait time.Duration
	// DefaultFetchBytes is a fetch's max bytes when the request sets none.
	// Default 1 MiB.
	DefaultFetchBytes int

	// ElectionTimeout and HeartbeatInterval are the Raft timings of every
	// group. Defaults 1s and 100ms.
	ElectionTimeout   time.Duration
	HeartbeatInterval time.Duration
	// StatusInterval is how often a broker publishes its status (liveness
	// and partition leadership) and the controller leader its metadata.
	// Default 1s. A broker is considered down after 3 intervals of silence.
	StatusInterval time.Duration
	// ShutdownTimeout bounds leadership transfer and draining at Close.
	// Default 10s.
	ShutdownTimeout time.Duration

	// Retention is the default retention of partition logs (topics may
	// override it). Default DefaultRetentionConfig().
	Retention RetentionConfig

	// Log configures every partition's (and the controller's) segment log.
	// Default segmentlog.DefaultOptions().
	Log segmentlog.Options
	// FS is the file system the segment logs are opened on; nil means the
	// operating system's (vfs.Default). Tests inject faults through it.
	FS vfs.FS
	// ReplicaRestartBackoff is how long the broker waits before restarting
	// a partition replica that an error stopped (a failed write or fsync
	// of its log); the wait doubles with each failure in a row, up to 64
	// times this. Default 1s; 0 means the default.
	ReplicaRestartBackoff time.Duration

	// MetricsAddr, when set, serves /metrics, /healthz and /readyz on it
	// (host:port). Default "" (no HTTP server; use Handler).
	MetricsAddr string
	// Registerer receives the broker's metrics; nil registers none. When it
	// is also a prometheus.Gatherer (a *prometheus.Registry), /metrics
	// serves it.
	Registerer prometheus.Registerer
	// Logger receives structured logs; nil discards.
	Logger *slog.Logger

	// producerKeepRecent replaces defaultProducerKeepRecent when set
	// (tests only: every broker of a cluster must agree on it).
	producerKeepRecent time.Duration
}

// NATSConfig says how a broker reaches NATS.
type NATSConfig struct {
	// Embedded, when non-nil, runs a NATS server in the broker's process
	// (clustered with other brokers' servers through its Routes).
	Embedded *transport.EmbeddedConfig
	// Connect configures the client connection. With Embedded set its URLs
	// and InProcess are ignored: the broker connects to its own server
	// in-process (transport.ConnectConfig.InProcess), never over TCP.
	// Without Embedded, InProcess may name a server of this process that
	// outlives the broker (the development cluster's servers). In-process,
	// the broker opens a second connection, in the server's peer account,
	// for its traffic to other brokers (transport.PeerAccount,
	// docs/adr/0005); over TCP that traffic shares this connection.
	Connect transport.ConnectConfig
}

// DefaultConfig returns the documented defaults: broker 1 alone, embedded
// NATS on 127.0.0.1:4222, data in ./raftmq-data.
func DefaultConfig() Config {
	return Config{
		ID:                1,
		DataDir:           "./raftmq-data",
		Bootstrap:         []uint64{1},
		ClusterName:       protocol.DefaultSubjectPrefix,
		NATS:              NATSConfig{Embedded: &transport.EmbeddedConfig{ClientListen: transport.DefaultClientListen}},
		MaxBatchBytes:     1 << 20,
		MaxRecordBytes:    1 << 20,
		DefaultPartitions: 1,
		MaxPartitions:     1024,
		ProduceTimeout:    10 * time.Second,
		MaxFetchWait:      30 * time.Second,
		DefaultFetchBytes: 1 << 20,
		ElectionTimeout:   time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		StatusInterval:    time.Second,
		ShutdownTimeout:   10 * time.Second,
		Log:               segmentlog.DefaultOptions(),
		Retention:         DefaultRetentionConfig(),

		ReplicaRestartBackoff: time.Second,
	}
}

// Validate reports the first invalid field with a message naming it.
func (c Config) Validate() error {
	switch {
	case c.ID == 0:
		return errors.New("broker: ID must be non-zero")
	case c.DataDir == "":
		return errors.New("broker: DataDir is empty")
	case len(c.Bootstrap) == 0:
		return errors.New("broker: Bootstrap lists no broker ids")
	case c.MaxBatchBytes < protocol.BatchHeaderSize+1:
		return fmt.Errorf("broker: MaxBatchBytes %d is too small", c.MaxBatchBytes)
	case c.MaxRecordBytes <= 0:
		return fmt.Errorf("broker: MaxRecordBytes %d must be positive", c.MaxRecordBytes)
	case c.ReplicaRestartBackoff < 0:
		return fmt.Errorf("broker: ReplicaRestartBackoff %v is negative", c.ReplicaRestartBackoff)
	case c.DefaultPartitions <= 0:
		return fmt.Errorf("broker: DefaultPartitions %d must be positive", c.DefaultPartitions)
	case c.MaxPartitions < c.DefaultPartitions:
		return fmt.Errorf("broker: MaxPartitions %d is below DefaultPartitions %d", c.MaxPartitions, c.DefaultPartitions)
	case c.ProduceTimeout <= 0:
		return fmt.Errorf("broker: ProduceTimeout %v must be positive", c.ProduceTimeout)
	case c.MaxFetchWait < 0:
		return fmt.Errorf("broker: MaxFetchWait %v is negative", c.MaxFetchWait)
	case c.DefaultFetchBytes <= 0:
		return fmt.Errorf("broker: DefaultFetchBytes %d must be positive", c.DefaultFetchBytes)
	case c.HeartbeatInterval <= 0:
		return fmt.Errorf("broker: HeartbeatInterval %v must be positive", c.HeartbeatInterval)
	case c.ElectionTimeout < 2*c.HeartbeatInterval:
		return fmt.Errorf("broker: ElectionTimeout %v must be at least twice HeartbeatInterval %v", c.ElectionTimeout, c.HeartbeatInterval)
	case c.StatusInterval <= 0:
		return fmt.Errorf("broker: StatusInterval %v must be positive", c.StatusInterval)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("broker: ShutdownTimeout %v is negative", c.ShutdownTimeout)
	}
	seen := map[uint64]bool{}
	for _, id := range c.Bootstrap {
		if id == 0 || seen[id] {
			return fmt.Errorf("broker: Bootstrap %v has a zero or repeated id", c.Bootstrap)
		}
		seen[id] = true
	}
	if c.ClusterName != "" {
		if err := protocol.ValidateTopicName(c.ClusterName); err != nil {
			return fmt.Errorf("broker: ClusterName %q is not a valid subject prefix", c.ClusterName)
		}
	}
	if c.NATS.Embedded != nil {
		if err := c.NATS.Embedded.Validate(); err != nil {
			return fmt.Errorf("broker: embedded NATS: %w", err)
		}
	}
	if err := c.NATS.Connect.Validate(); err != nil {
		return fmt.Errorf("broker: NATS connection: %w", err)
	}
	if err := c.Retention.Validate(); err != nil {
		return err
	}
	if err := c.Log.Validate(); err != nil {
		return fmt.Errorf("broker: log options: %w", err)
	}
	return nil
}

func (c Config) prefix() string {
	if c.ClusterName == "" {
		return protocol.DefaultSubjectPrefix
	}
	return c.ClusterName
}

func (c Config) isBootstrap() bool { return slices.Contains(c.Bootstrap, c.ID) }
