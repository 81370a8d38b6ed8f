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
// committing; a stopped group, a stopped leader too, reports a follower
// that knows no leader; removing a group reports ErrClosed.
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
	if st := g.Status(); st.Role != RoleFollower || st.Leader != 0 {
		t.Fatalf("a stopped group reports role %v and leader %d, want a follower that knows no leader", st.Role, st.Leader)
	}
	if _, _, err := g.Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted).Wait(ctx); !errors.Is(err, injected) || !errors.Is(err, ErrStopped) {
		t.Fatalf("proposal to the stopped replica: %v, want the sync failure wrapped in ErrStopped", err)
	}

	// A leader that stops stops claiming to lead.
	other := tc.groups[leader]
	tc.logs[leader].mu.Lock()
	tc.logs[leader].failSync = injected
	tc.logs[leader].mu.Unlock()
	other.Propose(ctx, protocol.EntryControl, []byte("x"), AckCommitted)
	select {
	case <-other.Stopped():
	case <-ctx.Done():
		t.Fatal("the leader whose sync fails did not stop")
	}
	if st := other.Status(); st.Role != RoleFollower || st.Leader != 0 {
		t.Fatalf("a stopped leader reports role %v and leader %d, want a follower that knows no leader", st.Role, st.Leader)
	}

	var third uint64
	for id := range tc.groups {
		if id != leader && id != failing {
			third = id
		}
	}
	removed := tc.groups[third]
	if err := tc.hosts[third].RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	<-removed.Stopped()
	if err := removed.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err after RemoveGroup = %v, want ErrClosed", err)
	}
}
