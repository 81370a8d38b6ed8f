package clients

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// ClientOption configures a Client (Connect, New).
type ClientOption func(*clientConfig) error

type clientConfig struct {
	prefix           string
	requestTimeout   time.Duration
	metadataMaxAge   time.Duration
	unknownTopicWait time.Duration
	retryBackoffMin  time.Duration
	retryBackoffMax  time.Duration
	name             string
	logger           *slog.Logger
	natsOptions      []nats.Option
}

func newClientConfig(opts []ClientOption) (clientConfig, error) {
	config := clientConfig{
		prefix:           protocol.DefaultSubjectPrefix,
		requestTimeout:   10 * time.Second,
		metadataMaxAge:   30 * time.Second,
		unknownTopicWait: 2 * time.Second,
		retryBackoffMin:  20 * time.Millisecond,
		retryBackoffMax:  time.Second,
		name:             "raftmq-client",
		logger:           slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if err := opt(&config); err != nil {
			return clientConfig{}, err
		}
	}
	return config, nil
}

// WithSubjectPrefix sets the cluster's subject prefix, the cluster name the
// brokers were started with. Default "raftmq" (protocol.DefaultSubjectPrefix).
func WithSubjectPrefix(prefix string) ClientOption {
	return func(c *clientConfig) error {
		if prefix == "" {
			return errors.New("clients: empty subject prefix")
		}
		c.prefix = prefix
		return nil
	}
}

// WithRequestTimeout bounds each request to a broker when the context
// allows longer (a produce, a fetch beyond its long-poll wait, an admin
// call). A produce that times out may still have been committed. Default 10s.
func WithRequestTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if d <= 0 {
			return fmt.Errorf("clients: request timeout %v must be positive", d)
		}
		c.requestTimeout = d
		return nil
	}
}

// WithMetadataMaxAge is how long cached topic metadata (partition count,
// leaders) is used before it is fetched again. Errors such as "not leader"
// refresh it at once regardless. Default 30s.
func WithMetadataMaxAge(d time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if d <= 0 {
			return fmt.Errorf("clients: metadata max age %v must be positive", d)
		}
		c.metadataMaxAge = d
		return nil
	}
}

// WithUnknownTopicWait is how long a request naming a topic the cluster
// does not know is retried before it fails: producing to or assigning the
// topic, fetching from it (a topic deleted while it is consumed: its
// partitions then fail with a PartitionError), committing or reading a
// group's offsets of it, and the group admin requests naming it. A topic
// just created elsewhere takes a moment to reach every broker. Default 2s.
func WithUnknownTopicWait(d time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if d < 0 {
			return fmt.Errorf("clients: unknown topic wait %v is negative", d)
		}
		c.unknownTopicWait = d
		return nil
	}
}

// WithRetryBackoff sets the pause before retrying a request that failed with
// a retriable error: min doubles on every attempt up to max. Default 20ms
// and 1s.
func WithRetryBackoff(min, max time.Duration) ClientOption {
	return func(c *clientConfig) error {
		if min <= 0 || max < min {
			return fmt.Errorf("clients: retry backoff %v..%v: need 0 < min <= max", min, max)
		}
		c.retryBackoffMin, c.retryBackoffMax = min, max
		return nil
	}
}

// WithLogger sets the logger for retries, metadata refreshes and other
// events worth a line. Default: discard.
func WithLogger(logger *slog.Logger) ClientOption {
	return func(c *clientConfig) error {
		if logger == nil {
			return errors.New("clients: nil logger")
		}
		c.logger = logger
		return nil
	}
}

// WithName sets the NATS connection name shown in NATS monitoring (Connect
// only). Default "raftmq-client".
func WithName(name string) ClientOption {
	return func(c *clientConfig) error {
		c.name = name
		return nil
	}
}

// WithNATSOptions passes options to nats.Connect (Connect only): credentials,
// TLS, tokens, reconnect policy. They apply after the client's own defaults
// (reconnect forever every 250ms), so they can override them. Default none.
func WithNATSOptions(opts ...nats.Option) ClientOption {
	return func(c *clientConfig) error {
		c.natsOptions = append(c.natsOptions, opts...)
		return nil
	}
}

// backoff returns the pause before retry number attempt (1-based).
func (c *clientConfig) backoff(attempt int) time.Duration {
	d := c.retryBackoffMin
	for i := 1; i < attempt && d < c.retryBackoffMax; i++ {
		d *= 2
	}
	return min(d, c.retryBackoffMax)
}
