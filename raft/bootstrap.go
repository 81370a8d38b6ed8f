package raft

import (
	"errors"
	"fmt"

	"github.com/raftmq/raftmq/protocol"
)

// ErrAlreadyBootstrapped is returned by Bootstrap for storage that already
// holds Raft state.
var ErrAlreadyBootstrapped = errors.New("raft: storage already holds state; refusing to bootstrap")

// Bootstrap initializes a new group's storage with its first configuration
// (cluster formation): it writes one EntryConfig entry at index 1, term 1,
// syncs it, and saves term 1. Run it on one of the initial servers (the
// others start with empty storage and no Voters, and learn the
// configuration from the log) or on all of them with the same conf. It
// refuses with ErrAlreadyBootstrapped when the log or the hard state is not
// empty, so repeating it is safe. Call it before Host.AddGroup.
func Bootstrap(log LogStorage, stable StableStorage, conf protocol.RaftConfiguration) error {
	if err := conf.Validate(); err != nil {
		return fmt.Errorf("raft: bootstrap: %w", err)
	}
	if len(conf.Voters) == 0 || conf.Joint() {
		return fmt.Errorf("raft: bootstrap: %w: need voters and no outgoing voters", ErrInvalidMembership)
	}
	hs, err := stable.Load()
	if err != nil {
		return fmt.Errorf("raft: bootstrap: load hard state: %w", err)
	}
	if log.LastIndex() != 0 || log.FirstIndex() != 1 || hs != (HardState{}) {
		return fmt.Errorf("%w (log [%d, %d], term %d)", ErrAlreadyBootstrapped, log.FirstIndex(), log.LastIndex(), hs.Term)
	}
	entry := protocol.Entry{Index: 1, Term: 1, Type: protocol.EntryConfig, Data: protocol.AppendRaftConfiguration(nil, &conf)}
	if err := log.Append([]protocol.Entry{entry}); err != nil {
		return fmt.Errorf("raft: bootstrap: append: %w", err)
	}
	if _, err := log.Sync(); err != nil {
		return fmt.Errorf("raft: bootstrap: sync: %w", err)
	}
	if err := stable.Save(HardState{Term: 1}); err != nil {
		return fmt.Errorf("raft: bootstrap: save hard state: %w", err)
	}
	return nil
}
