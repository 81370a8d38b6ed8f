package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestStoppedReportsStorageError: a replica whose log sync fails stops, and
// Stopped and Err say so with the storage error, while the other two go on
// committing; removing a group reports ErrClosed.
func TestStoppedReportsStorageError(t *testing.T) {
	tc := newTestCluster(t, []uint64{1, 2, 3}, nil)
	leader := tc.leader(t)
	var failing uint64
	for id := range tc.groups {
		if id != leader {
			failing = id
			break
		}
	}
	g := tc.groups[failing]
	select {
	case <-g.Stopped():
		t.Fatal("Stopped closed on a running group")
	default:
	}
	if err := g.Err(); err != nil {
		t.Fatalf("Err of a running group: %v", err)
	}
	injected := errors.New("injected sync failure")
	log := tc.logs[failing]
	log.mu.Lock()
	log.failSync = injected
	log.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		if _, _, err := tc.groups[leader].Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted).Wait(ctx); err != nil {
			t.Fatalf("proposal %d with one follower failed: %v", i, err)
		}
	}
	select {
	case <-g.Stopped():
	case <-ctx.Done():
		t.Fatal("the replica whose sync fails did not stop")
	}
	if err := g.Err(); !errors.Is(err, injected) || !errors.Is(err, ErrStopped) {
		t.Fatalf("Err = %v, want the sync failure wrapped in ErrStopped", err)
	}
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted).Wait(ctx); !errors.Is(err, injected) || !errors.Is(err, ErrStopped) {
		t.Fatalf("proposal to the stopped replica: %v, want the sync failure wrapped in ErrStopped", err)
	}

	other := tc.groups[leader]
	if err := tc.hosts[leader].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	<-other.Stopped()
	if err := other.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err after RemoveGroup = %v, want ErrClosed", err)
	}
}
