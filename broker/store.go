package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/raftmq/raftmq/raft"
)

// ErrDataDirLocked is returned by Start when another broker (or another
// Broker value in this process) holds the data directory.
var ErrDataDirLocked = errors.New("broker: data directory is in use by another broker")

// lockDataDir takes the data directory's lock file, creating the directory.
func lockDataDir(dir string) (io.Closer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: create data directory: %w", err)
	}
	name := filepath.Join(dir, "raftmq.lock")
	lock, err := vfs.Default.Lock(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is locked (%v); stop the other broker or choose another --data directory", ErrDataDirLocked, name, err)
	}
	return lock, nil
}

// Keys of the state database. Every key starts with a one-byte kind.
const (
	keyHardState = 'h' // 'h' + group id (8 bytes big endian) -> term, vote, commit (3 x uint64 LE)
	keyReplica   = 'r' // 'r' + group id -> replica directory name (the partition state)
)

// stateStore is the broker's Pebble database: Raft hard state per group and
// partition replica records.
type stateStore struct {
	db *pebble.DB
}

func openStateStore(dir string) (*stateStore, error) {
	db, err := pebble.Open(dir, &pebble.Options{FS: vfs.Default, Logger: quietPebbleLogger{}})
	if err != nil {
		return nil, fmt.Errorf("broker: open state database %s: %w", dir, err)
	}
	return &stateStore{db: db}, nil
}

func (s *stateStore) Close() error { return s.db.Close() }

func groupKey(kind byte, groupID uint64) []byte {
	k := make([]byte, 9)
	k[0] = kind
	binary.BigEndian.PutUint64(k[1:], groupID)
	return k
}

func (s *stateStore) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

// replicaDir returns the directory recorded for a group, "" if none.
func (s *stateStore) replicaDir(groupID uint64) (string, error) {
	v, err := s.get(groupKey(keyReplica, groupID))
	return string(v), err
}

func (s *stateStore) setReplicaDir(groupID uint64, dir string) error {
	return s.db.Set(groupKey(keyReplica, groupID), []byte(dir), pebble.Sync)
}

// forgetGroup deletes everything stored for a group (after its replica is
// removed from this broker).
func (s *stateStore) forgetGroup(groupID uint64) error {
	b := s.db.NewBatch()
	_ = b.Delete(groupKey(keyHardState, groupID), nil)
	_ = b.Delete(groupKey(keyReplica, groupID), nil)
	s.forgetConsumerState(b, groupID)
	return b.Commit(pebble.Sync)
}

// replicaGroups lists the group ids that have a replica record.
func (s *stateStore) replicaGroups() (map[uint64]string, error) {
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{keyReplica}, UpperBound: []byte{keyReplica + 1}})
	if err != nil {
		return nil, err
	}
	out := map[uint64]string{}
	for iter.First(); iter.Valid(); iter.Next() {
		if len(iter.Key()) == 9 {
			out[binary.BigEndian.Uint64(iter.Key()[1:])] = string(iter.Value())
		}
	}
	if err := iter.Error(); err != nil {
		iter.Close()
		return nil, err
	}
	return out, iter.Close()
}

// hardStateStorage is raft.StableStorage for one group, in the state database.
type hardStateStorage struct {
	store   *stateStore
	groupID uint64
}

var _ raft.StableStorage = (*hardStateStorage)(nil)

func (h *hardStateStorage) Load() (raft.HardState, error) {
	v, err := h.store.get(groupKey(keyHardState, h.groupID))
	if err != nil {
		return raft.HardState{}, fmt.Errorf("broker: load hard state of group %d: %w", h.groupID, err)
	}
	if v == nil {
		return raft.HardState{}, nil
	}
	if len(v) != 24 {
		return raft.HardState{}, fmt.Errorf("broker: hard state of group %d is %d bytes, want 24 (corrupt state database)", h.groupID, len(v))
	}
	le := binary.LittleEndian
	return raft.HardState{Term: le.Uint64(v), Vote: le.Uint64(v[8:]), Commit: le.Uint64(v[16:])}, nil
}

func (h *hardStateStorage) Save(hs raft.HardState) error {
	v := make([]byte, 24)
	le := binary.LittleEndian
	le.PutUint64(v, hs.Term)
	le.PutUint64(v[8:], hs.Vote)
	le.PutUint64(v[16:], hs.Commit)
	if err := h.store.db.Set(groupKey(keyHardState, h.groupID), v, pebble.Sync); err != nil {
		return fmt.Errorf("broker: save hard state of group %d: %w", h.groupID, err)
	}
	return nil
}

// quietPebbleLogger drops Pebble's informational logs; errors still surface
// through return values.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any)  {}
func (quietPebbleLogger) Errorf(string, ...any) {}
func (quietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
