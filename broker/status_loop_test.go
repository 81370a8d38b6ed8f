package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestBrokersStayAliveWhileStartingSlowReplicas: a broker keeps reporting
// its status while its run loop spends seconds starting replicas, so the
// cluster never counts it dead for that. Each new partition log's clock
// read (one when the log creates its first segment) sleeps 900 ms while
// the test's switch is on, so starting four replicas holds every broker's
// run loop for about 3.6 s: over fourteen status intervals, and more than
// four times the 750 ms a broker may go unheard and still count as alive.
func TestBrokersStayAliveWhileStartingSlowReplicas(t *testing.T) {
	const (
		interval   = 250 * time.Millisecond
		slowOpen   = 900 * time.Millisecond
		partitions = 4
	)
	var slow atomic.Bool
	var slowReads atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, client := startTestClusterWith(t, 3, func(c *Config) {
		fastTimings(c)
		c.StatusInterval = interval
		c.Log.SegmentMaxAge = 0 // no clock read per append
		c.Log.Now = func() time.Time {
			if slow.Load() {
				slowReads.Add(1)
				time.Sleep(slowOpen)
			}
			return time.Now()
		}
	})

	// Wait until every broker is alive before the replicas start.
	status := func() (protocol.MetadataReply, error) {
		var reply protocol.MetadataReply
		data, err := client.request(protocol.SubjectAdmin(client.prefix, protocol.AdminClusterStatus), []byte("{}"))
		if err == nil {
			err = json.Unmarshal(data, &reply)
		}
		return reply, err
	}
	dead := func(reply protocol.MetadataReply) []uint64 {
		var ids []uint64
		for _, b := range reply.Brokers {
			if !b.Alive {
				ids = append(ids, b.ID)
			}
		}
		if len(reply.Brokers) != 3 {
			ids = append(ids, 0)
		}
		return ids
	}
	waitFor(ctx, t, "every broker alive before the replicas start", func() bool {
		reply, err := status()
		return err == nil && reply.ControllerLeader != 0 && len(dead(reply)) == 0
	})

	// Watch the cluster status while the replicas start: for each broker,
	// the longest stretch in which every answer counted it dead.
	slow.Store(true)
	defer slow.Store(false)
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	longestDead := map[uint64]time.Duration{}
	var watchErr error
	go func() {
		defer close(watchDone)
		deadSince := map[uint64]time.Time{}
		for {
			reply, err := status()
			now := time.Now()
			if err != nil {
				watchErr = err
				return
			}
			isDead := map[uint64]bool{}
			for _, id := range dead(reply) {
				isDead[id] = true
				if _, ok := deadSince[id]; !ok {
					deadSince[id] = now
				}
				longestDead[id] = max(longestDead[id], now.Sub(deadSince[id]))
			}
			for id := range deadSince {
				if !isDead[id] {
					delete(deadSince, id)
				}
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	client.createTopic("slow", partitions, 3)
	// Every broker starts all four replicas; wait until each has (bounded).
	waitFor(ctx, t, "every broker to start its replicas", func() bool {
		started := 0
		for id := uint64(1); id <= 3; id++ {
			if b := cluster.Broker(id); b != nil {
				b.mu.RLock()
				started += len(b.groups)
				b.mu.RUnlock()
			}
		}
		return started >= 3*partitions
	})
	close(stopWatch)
	<-watchDone
	if watchErr != nil {
		t.Fatalf("cluster status: %v", watchErr)
	}
	if n := slowReads.Load(); n < 3*partitions {
		t.Fatalf("%d slow clock reads, want at least %d (one per new replica log): the replicas did not start slowly", n, 3*partitions)
	}
	// 1.5 s: twice the time a broker may go unheard, and well under the
	// 3.6 s a run loop spends starting the replicas.
	t.Logf("longest stretches reported dead, by broker: %v", longestDead)
	for id, d := range longestDead {
		if d > 1500*time.Millisecond {
			t.Errorf("broker %s was reported dead for %v while starting replicas", brokerName(id), d)
		}
	}
}

func brokerName(id uint64) string {
	if id == 0 {
		return "(missing from the status)"
	}
	return fmt.Sprint(id)
}
