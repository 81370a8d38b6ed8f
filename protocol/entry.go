package protocol

import "fmt"

// EntryType says what a Raft log entry carries.
type EntryType uint8

const (
	// EntryNoop is the empty entry a new leader appends (Raft §5.4.2).
	EntryNoop EntryType = 1
	// EntryRecordBatch carries one record batch; it takes record offsets.
	EntryRecordBatch EntryType = 2
	// EntryControl carries a state-machine command that takes a Raft index
	// but no record offsets (consumer offset commits, controller metadata).
	EntryControl EntryType = 3
	// EntryConfig carries a Raft membership configuration.
	EntryConfig EntryType = 4
)

// Valid reports whether t is a known entry type.
func (t EntryType) Valid() bool { return t >= EntryNoop && t <= EntryConfig }

func (t EntryType) String() string {
	switch t {
	case EntryNoop:
		return "noop"
	case EntryRecordBatch:
		return "record-batch"
	case EntryControl:
		return "control"
	case EntryConfig:
		return "config"
	}
	return fmt.Sprintf("entry-type(%d)", uint8(t))
}

// Entry is one Raft log entry. Index is dense and increasing from the log's
// first index. Data is owned by whoever holds the Entry; readers that get an
// Entry from a log must not modify Data.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	Data  []byte
}
