package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/protocol"
)

// staleLeaderID is a broker that is not in the cluster; a stale status
// report names it as the partition's leader, and the test answers the
// produce requests forwarded to it.
const staleLeaderID = 9

// stalePublish is a plain publish set up to go through a stale leader: a
// broker without a replica of the topic's one partition believes
// staleLeaderID leads it; answer serves the requests forwarded there.
type stalePublish struct {
	broker   *Broker // holds no replica of the topic
	topic    string
	requests atomic.Int64 // produce requests staleLeaderID received
	answer   atomic.Pointer[func(request int64) protocol.ProduceReply]
}

// startStalePublish starts two brokers and a topic with one partition and
// one replica, and makes the broker without the replica see a status
// report, as fresh as its own, in which staleLeaderID leads the partition
// at a higher term than any real leader.
func startStalePublish(t *testing.T) *stalePublish {
	t.Helper()
	cluster, client := startTestCluster(t, 2)
	info := client.createTopic("stale", 1, 1)
	partition := info.Partitions[0]
	s := &stalePublish{topic: "stale"}
	for _, id := range []uint64{1, 2} {
		if !slices.Contains(partition.Replicas, id) {
			s.broker = cluster.Broker(id)
		}
	}
	if s.broker == nil {
		t.Fatalf("both brokers hold a replica of %+v", partition)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	waitFor(ctx, t, "the topic in the broker's metadata", func() bool { return s.broker.currentMetadata().Topics[s.topic] != nil })
	nc, err := nats.Connect(cluster.ClientURLs()[s.broker.cfg.ID-1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	_, err = nc.Subscribe(protocol.SubjectBrokerProduce(client.prefix, staleLeaderID), func(msg *nats.Msg) {
		reply := (*s.answer.Load())(s.requests.Add(1))
		_ = msg.Respond(protocol.AppendProduceReply(nil, &reply))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.broker.mu.Lock()
	s.broker.reports[staleLeaderID] = brokerReport{seen: time.Now().Add(time.Hour), status: protocol.BrokerStatus{
		Version: protocol.APIVersion, ID: staleLeaderID, Ready: true,
		Partitions: []protocol.PartitionStatus{{Topic: s.topic, GroupID: partition.GroupID, Role: "leader", Term: 1 << 40, Leader: staleLeaderID}},
	}}
	s.broker.mu.Unlock()
	return s
}

// publish sends one plain publish to s.broker with the stale leader
// answering as answer says, and returns the reply and how many requests
// the stale leader received.
func (s *stalePublish) publish(answer func(request int64) protocol.ProduceReply) (protocol.PublishReply, int64) {
	s.requests.Store(0)
	s.answer.Store(&answer)
	reply := s.broker.publish(&nats.Msg{Subject: protocol.SubjectProduce(s.broker.prefix, s.topic), Data: []byte("v")})
	return reply, s.requests.Load()
}

// TestPlainPublishAfterAnUnknownOutcomeAnswersTimeout: once an attempt's
// outcome is unknown (the leader may have written the record), a plain
// publish that then runs out of time answers timeout, "it may have been
// written", and not the last attempt's not_leader or not_ready, which
// read as "not written".
func TestPlainPublishAfterAnUnknownOutcomeAnswersTimeout(t *testing.T) {
	s := startStalePublish(t)
	for _, later := range []*protocol.Error{
		protocol.Errorf(protocol.CodeNotReady, "broker %d: leadership transfer in progress", staleLeaderID),
		{Code: protocol.CodeNotLeader, Message: fmt.Sprintf("broker %d does not lead it", staleLeaderID)},
	} {
		t.Run(later.Code.String(), func(t *testing.T) {
			reply, requests := s.publish(func(request int64) protocol.ProduceReply {
				if request == 1 {
					return protocol.ProduceReply{Err: protocol.Errorf(protocol.CodeTimeout, "the leader lost the entry at index 7 before it was acknowledged; it may still be committed")}
				}
				return protocol.ProduceReply{Err: later}
			})
			if requests < 2 {
				t.Fatalf("the stale leader got %d requests, want a retry after the unknown outcome", requests)
			}
			if reply.Error == nil || reply.Error.Code != protocol.CodeTimeout {
				t.Fatalf("publish whose first attempt's outcome is unknown, then %s: %v, want %s", later.Code, reply.Error, protocol.CodeTimeout)
			}
			if !strings.Contains(reply.Error.Message, "may have been written") {
				t.Fatalf("reply %q does not say the record may have been written", reply.Error.Message)
			}
		})
	}
}

// TestPlainPublishBacksOffBetweenBrokersNamingEachOther: two brokers whose
// stale views name each other as the partition's leader do not bounce a
// plain publish between them until its deadline in a tight loop: the
// broker pauses, backing off, before asking a broker again, and the
// answer names the brokers it asked.
func TestPlainPublishBacksOffBetweenBrokersNamingEachOther(t *testing.T) {
	s := startStalePublish(t)
	start := time.Now()
	reply, requests := s.publish(func(int64) protocol.ProduceReply {
		return protocol.ProduceReply{Err: &protocol.Error{Code: protocol.CodeNotLeader, Leader: s.broker.cfg.ID,
			Message: fmt.Sprintf("broker %d does not lead it", staleLeaderID)}}
	})
	elapsed := time.Since(start)
	t.Logf("the stale leader was asked %d times in %v; the reply: %v", requests, elapsed, reply.Error)
	// The produce timeout is 3 s (fastTimings); backing off from 50 ms by
	// 50 ms asks the stale leader about a dozen times.
	if requests > 25 {
		t.Fatalf("the stale leader was asked %d times in %v, want a pause before each repeat", requests, elapsed)
	}
	// not_leader, or timeout if the deadline fell during a forwarded
	// request (its outcome is then unknown).
	if reply.Error == nil || (reply.Error.Code != protocol.CodeNotLeader && reply.Error.Code != protocol.CodeTimeout) {
		t.Fatalf("publish bounced between brokers: %v, want %s", reply.Error, protocol.CodeNotLeader)
	}
	for _, want := range []string{fmt.Sprint(s.broker.cfg.ID), fmt.Sprint(staleLeaderID), "attempts"} {
		if !strings.Contains(reply.Error.Message, want) {
			t.Fatalf("reply %q does not name the brokers asked and the attempts (%q)", reply.Error.Message, want)
		}
	}
}

// TestPlainPublishEmptyKeyIsAKey: an empty Raftmq-Key header is a key, as
// an empty non-nil key is for the SDK (and Kafka): every such record goes
// to protocol.PartitionForKey of the empty key and is stored with an
// empty, not a missing, key. Round robin is for a publish without the
// header.
func TestPlainPublishEmptyKeyIsAKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, client := startTestCluster(t, 1)
	const partitions = 4
	client.createTopic("keys", partitions, 1)
	want := uint32(protocol.PartitionForKey([]byte{}, partitions))
	for i := range partitions {
		msg := &nats.Msg{Subject: protocol.SubjectProduce(client.prefix, "keys"), Data: []byte(fmt.Sprint(i)),
			Header: nats.Header{protocol.HeaderKey: []string{""}}}
		answer, err := client.nc.RequestMsgWithContext(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		var reply protocol.PublishReply
		if err := json.Unmarshal(answer.Data, &reply); err != nil || reply.Error != nil {
			t.Fatalf("publish %d: %s %v", i, answer.Data, err)
		}
		if reply.Partition != want || reply.Offset != uint64(i) {
			t.Fatalf("publish %d with an empty key went to %d/%d, want partition %d (the empty key's hash), offset %d", i, reply.Partition, reply.Offset, want, i)
		}
	}
	fetched, err := client.fetchFrom(1, &protocol.FetchRequest{Topic: "keys", Partition: want, Offset: 0, MaxBytes: 1 << 20})
	if err != nil || fetched.Err != nil {
		t.Fatalf("fetch: %v %v", err, fetched.Err)
	}
	count := 0
	err = protocol.SplitBatches(fetched.Batches, func(batch []byte, _ protocol.BatchHeader) error {
		return protocol.DecodeRecords(batch, func(r protocol.Record) error {
			count++
			if r.Key == nil || len(r.Key) != 0 {
				return fmt.Errorf("record %d has key %q (nil %v), want an empty key", r.Offset, r.Key, r.Key == nil)
			}
			return nil
		})
	})
	if err != nil || count != partitions {
		t.Fatalf("fetched %d records: %v", count, err)
	}
}
