package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// metadataCache holds what the client knows of each topic it uses: the
// partitions and their leaders. Concurrent refreshes of one topic share a
// single request.
type metadataCache struct {
	client *Client

	mu     sync.Mutex
	topics map[string]*topicEntry
	// generation moves whenever cached metadata may have changed: a load
	// ended, a topic was forgotten, or a loaded topic reached the metadata
	// max age (a timer started by the load). A producer remembers a
	// topic's partition count with the generation it read it in and uses
	// it while the generation stays (Producer.lastPartitionCount).
	generation atomic.Uint64
}

type topicEntry struct {
	info      protocol.TopicInfo // partitions sorted by number
	fetchedAt time.Time          // zero: never loaded
	loading   chan struct{}      // non-nil while a load runs; closed when it ends
	loadErr   error              // outcome of the last load
	count     *partitionCountOf  // partitionCountAt's last result
}

func newMetadataCache(client *Client) *metadataCache {
	return &metadataCache{client: client, topics: make(map[string]*topicEntry)}
}

// topic returns the cached metadata of name, loading it when missing or
// older than the client's metadata max age.
func (m *metadataCache) topic(ctx context.Context, name string) (protocol.TopicInfo, error) {
	m.mu.Lock()
	entry := m.topics[name]
	if entry != nil && !entry.fetchedAt.IsZero() && time.Since(entry.fetchedAt) < m.client.config.metadataMaxAge {
		info := entry.info
		m.mu.Unlock()
		return info, nil
	}
	m.mu.Unlock()
	return m.refresh(ctx, name)
}

// partitionCountOf is a topic's partition count as of a generation of
// the metadata cache: valid while the generation stays.
type partitionCountOf struct {
	topic      string
	partitions int
	generation uint64
}

// partitionCountAt returns the partition count of name as of the current
// generation when its cached metadata is fresh, without loading anything
// (nil: use partitionCount). now reads the clock. The result is shared:
// it is allocated once per topic and generation, not per call, so a
// producer alternating between topics does not allocate per record.
func (m *metadataCache) partitionCountAt(name string, now func() time.Time) *partitionCountOf {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The generation is read before the clock: a max-age timer that
	// fires after this read moves the generation past the result's, one
	// that fired before it shows as staleness here.
	generation := m.generation.Load()
	entry := m.topics[name]
	if entry == nil || entry.fetchedAt.IsZero() || now().Sub(entry.fetchedAt) >= m.client.config.metadataMaxAge ||
		len(entry.info.Partitions) == 0 {
		return nil
	}
	if c := entry.count; c != nil && c.generation == generation {
		return c
	}
	entry.count = &partitionCountOf{topic: name, partitions: len(entry.info.Partitions), generation: generation}
	return entry.count
}

// refresh loads the metadata of name from the cluster, joining a load
// already under way.
func (m *metadataCache) refresh(ctx context.Context, name string) (protocol.TopicInfo, error) {
	m.mu.Lock()
	entry := m.topics[name]
	if entry == nil {
		entry = &topicEntry{}
		m.topics[name] = entry
	}
	loading := entry.loading
	if loading == nil {
		loading = make(chan struct{})
		entry.loading = loading
		go m.load(name, entry, loading)
	}
	m.mu.Unlock()

	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The caller's deadline, not a broker's answer: a request
			// timeout, which is retriable (the load goes on for others).
			return protocol.TopicInfo{}, fmt.Errorf("clients: metadata of topic %q: %w (%w)", name, errRequestTimeout, ctx.Err())
		}
		return protocol.TopicInfo{}, ctx.Err()
	case <-loading:
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if entry.loadErr != nil {
		return protocol.TopicInfo{}, entry.loadErr
	}
	return entry.info, nil
}

// load runs one metadata request with its own deadline, so a waiter that
// gives up does not fail the others.
func (m *metadataCache) load(name string, entry *topicEntry, loading chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), m.client.config.requestTimeout)
	defer cancel()
	info, err := m.client.fetchTopicMetadata(ctx, name)
	m.mu.Lock()
	entry.loadErr = err
	if err == nil {
		entry.info = info
		entry.fetchedAt = time.Now()
	}
	entry.loading = nil
	m.generation.Add(1)
	m.mu.Unlock()
	if err == nil {
		time.AfterFunc(m.client.config.metadataMaxAge, func() { m.generation.Add(1) })
	}
	close(loading)
}

// fetchTopicMetadata asks any broker for the metadata of one topic.
func (c *Client) fetchTopicMetadata(ctx context.Context, name string) (protocol.TopicInfo, error) {
	var reply protocol.MetadataReply
	request := protocol.MetadataRequest{Version: protocol.APIVersion, Topics: []string{name}}
	if err := c.adminRequest(ctx, protocol.AdminMetadata, request, &reply); err != nil {
		return protocol.TopicInfo{}, err
	}
	if reply.Error != nil {
		return protocol.TopicInfo{}, reply.Error
	}
	for _, topic := range reply.Topics {
		if topic.Name == name {
			topic.Partitions = slices.Clone(topic.Partitions)
			slices.SortFunc(topic.Partitions, func(a, b protocol.PartitionInfo) int {
				return int(a.Partition) - int(b.Partition)
			})
			return topic, nil
		}
	}
	return protocol.TopicInfo{}, &protocol.Error{Code: protocol.CodeUnknownTopic, Message: fmt.Sprintf("topic %q", name)}
}

// topicWithRetry is topic retrying retriable errors with backoff: an
// unknown topic for the client's unknown-topic wait (a new topic's metadata
// takes a moment to reach every broker), other retriable errors (no broker
// answering, metadata not loaded yet) until ctx ends or maxWait passes.
func (m *metadataCache) topicWithRetry(ctx context.Context, name string, maxWait time.Duration) (protocol.TopicInfo, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		info, err := m.topic(ctx, name)
		if err == nil || !retriable(err) || ctx.Err() != nil {
			return info, err
		}
		wait := maxWait
		if errors.Is(err, protocol.CodeUnknownTopic) {
			wait = min(wait, m.client.config.unknownTopicWait)
		}
		pause := m.client.config.backoff(attempt)
		if time.Since(start)+pause > wait {
			return info, err
		}
		timer := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			timer.Stop()
			return info, err
		case <-timer.C:
		}
	}
}

// partitionCount returns how many partitions topic has, waiting at most
// maxWait for retriable errors to clear.
func (m *metadataCache) partitionCount(ctx context.Context, topic string, maxWait time.Duration) (int, error) {
	info, err := m.topicWithRetry(ctx, topic, maxWait)
	if err != nil {
		return 0, err
	}
	if len(info.Partitions) == 0 {
		return 0, &protocol.Error{Code: protocol.CodeNotReady, Message: fmt.Sprintf("topic %q has no partitions yet", topic)}
	}
	return len(info.Partitions), nil
}

// leader returns the cached leader of a partition; 0 when unknown.
func (m *metadataCache) leader(ctx context.Context, topic string, partition uint32) (uint64, error) {
	info, err := m.topic(ctx, topic)
	if err != nil {
		return 0, err
	}
	if int(partition) >= len(info.Partitions) {
		return 0, &protocol.Error{Code: protocol.CodeBadPartition,
			Message: fmt.Sprintf("topic %q has %d partitions, no partition %d", topic, len(info.Partitions), partition)}
	}
	return info.Partitions[partition].Leader, nil
}

// setLeader records a leader learned from a "not leader" reply, so the next
// request goes there without a metadata round trip.
func (m *metadataCache) setLeader(topic string, partition uint32, leader uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	entry := m.topics[topic]
	if entry == nil || int(partition) >= len(entry.info.Partitions) {
		return
	}
	partitions := slices.Clone(entry.info.Partitions) // readers hold the old slice
	partitions[partition].Leader = leader
	entry.info.Partitions = partitions
}

// forget drops a topic so the next use loads it again.
func (m *metadataCache) forget(topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if entry := m.topics[topic]; entry != nil && entry.loading == nil {
		delete(m.topics, topic)
		m.generation.Add(1)
	}
}
