package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func sampleRaftMessages() []RaftMessage {
	return []RaftMessage{
		{Type: MsgHeartbeat, GroupID: 7, From: 1, To: 2, Term: 3, Commit: 9},
		{Type: MsgAppendResponse, GroupID: 1 << 40, From: 2, To: 1, Term: 5, Index: 12, LogTerm: 4, RejectHint: 10, Reject: true},
		{Type: MsgVote, GroupID: 1, From: 3, To: 1, Term: 6, Index: 100, LogTerm: 5, Force: true, Context: 42},
		{Type: MsgReadIndex, GroupID: 4, From: 2, To: 1, Term: 7, Context: 1 << 50},
		{Type: MsgReadIndexResponse, GroupID: 4, From: 1, To: 2, Term: 7, Index: 99, Context: 1 << 50, Reject: true},
		{Type: MsgAppend, GroupID: 2, From: 1, To: 3, Term: 6, Index: 10, LogTerm: 5, Commit: 10, Entries: []Entry{
			{Index: 11, Term: 6, Type: EntryNoop},
			{Index: 12, Term: 6, Type: EntryRecordBatch, Data: []byte("hello world")},
			{Index: 13, Term: 6, Type: EntryControl, Data: bytes.Repeat([]byte{0xab}, 300)},
		}},
		{Type: MsgSnapshot, GroupID: 9, From: 1, To: 3, Term: 8, Snapshot: bytes.Repeat([]byte{0xcd}, 200)},
		{Type: MsgSnapshotAck, GroupID: 9, From: 3, To: 1, Term: 8, Snapshot: []byte("ack")},
	}
}

func equalRaftMessages(a, b *RaftMessage) bool {
	if a.GroupID != b.GroupID || a.From != b.From || a.To != b.To || a.Type != b.Type || a.Term != b.Term ||
		a.LogTerm != b.LogTerm || a.Index != b.Index || a.Commit != b.Commit || a.RejectHint != b.RejectHint ||
		a.Reject != b.Reject || a.Force != b.Force || a.Context != b.Context || len(a.Entries) != len(b.Entries) ||
		!bytes.Equal(a.Snapshot, b.Snapshot) {
		return false
	}
	for i := range a.Entries {
		x, y := &a.Entries[i], &b.Entries[i]
		if x.Index != y.Index || x.Term != y.Term || x.Type != y.Type || !bytes.Equal(x.Data, y.Data) {
			return false
		}
	}
	return true
}

func TestRaftMessageRoundTrip(t *testing.T) {
	for _, m := range sampleRaftMessages() {
		b := AppendRaftMessage([]byte("prefix"), &m)
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("prefix clobbered")
		}
		b = b[len("prefix"):]
		if got := RaftMessageSize(&m); got != len(b) {
			t.Fatalf("%v: RaftMessageSize %d, encoded %d", m.Type, got, len(b))
		}
		got, err := DecodeRaftMessage(b)
		if err != nil {
			t.Fatalf("%v: %v", m.Type, err)
		}
		if !equalRaftMessages(&m, &got) {
			t.Fatalf("round trip mismatch:\n%+v\n%+v", m, got)
		}
	}
}

// TestRaftMessageSizeIsTheHeaderBoundPlusEntriesAndPayload: what a
// sender bounds (MaxRaftHeaderSize, each entry's RaftEntrySize, the
// Snapshot payload's bytes) bounds the encoding, with the largest field
// values too.
func TestRaftMessageSizeIsTheHeaderBoundPlusEntriesAndPayload(t *testing.T) {
	const most = ^uint64(0)
	ms := append(sampleRaftMessages(),
		RaftMessage{Type: MsgAppend, GroupID: most, From: most, To: most, Term: most, LogTerm: most, Index: most,
			Commit: most, RejectHint: most, Context: most, Reject: true, Force: true,
			Entries: []Entry{{Index: most, Term: most, Type: EntryControl, Data: make([]byte, 1<<14)}}},
		RaftMessage{Type: MsgSnapshot, GroupID: most, From: most, To: most, Term: most, LogTerm: most, Index: most,
			Commit: most, RejectHint: most, Context: most, Snapshot: make([]byte, 1<<14)})
	for _, m := range ms {
		bound := MaxRaftHeaderSize + len(m.Snapshot)
		for i := range m.Entries {
			e := &m.Entries[i]
			one := AppendRaftMessage(nil, &RaftMessage{Entries: []Entry{*e}})
			none := AppendRaftMessage(nil, &RaftMessage{})
			if got, want := RaftEntrySize(e), len(one)-len(none); got != want {
				t.Fatalf("entry %d with %d bytes: RaftEntrySize %d, encoded in %d", e.Index, len(e.Data), got, want)
			}
			bound += RaftEntrySize(e)
		}
		if size := len(AppendRaftMessage(nil, &m)); size > bound {
			t.Fatalf("%v: encoded %d bytes, bound %d", m.Type, size, bound)
		}
	}
}

func TestDecodeRaftMessageRejectsCorruption(t *testing.T) {
	ms := sampleRaftMessages()
	good := AppendRaftMessage(nil, &ms[5])
	cases := map[string][]byte{
		"empty":      nil,
		"version":    append([]byte{9}, good[1:]...),
		"type":       append([]byte{1, 0}, good[2:]...),
		"flags":      append([]byte{1, 1, 0x80}, good[3:]...),
		"truncated":  good[:len(good)-1],
		"trailing":   append(append([]byte{}, good...), 0),
		"huge count": AppendRaftMessage(nil, &RaftMessage{Type: MsgAppend})[:12],
		"bad entry type": func() []byte {
			m := RaftMessage{Type: MsgAppend, Entries: []Entry{{Index: 1, Term: 1, Type: 77}}}
			return AppendRaftMessage(nil, &m)
		}(),
	}
	// Make "huge count" claim many entries.
	cases["huge count"] = append(cases["huge count"][:12], 0xff, 0xff, 0x03)
	for name, b := range cases {
		if _, err := DecodeRaftMessage(b); !errors.Is(err, ErrCorruptRaftMessage) {
			t.Errorf("%s: got %v, want ErrCorruptRaftMessage", name, err)
		}
	}
}

// A message without a snapshot payload is written in version 1, which
// replicas that predate version 2 decode; version 1 bytes still decode.
func TestRaftMessageWithoutPayloadKeepsVersion1(t *testing.T) {
	for _, m := range sampleRaftMessages() {
		b := AppendRaftMessage(nil, &m)
		want := byte(1)
		if len(m.Snapshot) > 0 {
			want = 2
		}
		if b[0] != want {
			t.Fatalf("%v: version %d, want %d", m.Type, b[0], want)
		}
	}
	v1 := []byte{1, byte(MsgHeartbeat), 0, 7, 1, 2, 3, 0, 0, 9, 0, 0, 0}
	m, err := DecodeRaftMessage(v1)
	if err != nil || m.Type != MsgHeartbeat || m.GroupID != 7 || m.Commit != 9 || m.Snapshot != nil {
		t.Fatalf("version 1 heartbeat: %+v, %v", m, err)
	}
}

func TestDecodeRaftMessageRejectsCorruptSnapshotPayload(t *testing.T) {
	m := RaftMessage{Type: MsgSnapshot, GroupID: 1, From: 1, To: 2, Term: 3, Snapshot: []byte("chunk")}
	good := AppendRaftMessage(nil, &m)
	noPayload := AppendRaftMessage(nil, &RaftMessage{Type: MsgSnapshot, Term: 3})
	cases := map[string][]byte{
		"truncated payload":    good[:len(good)-1],
		"trailing":             append(append([]byte{}, good...), 0),
		"version 2, no length": append([]byte{2}, noPayload[1:]...),
		"zero-length payload":  append(append([]byte{2}, noPayload[1:]...), 0),
		"payload too long":     append(append([]byte{2}, noPayload[1:]...), 0x7f, 1),
		"version 3":            append([]byte{3}, good[1:]...),
	}
	for name, b := range cases {
		if _, err := DecodeRaftMessage(b); !errors.Is(err, ErrCorruptRaftMessage) {
			t.Errorf("%s: got %v, want ErrCorruptRaftMessage", name, err)
		}
	}
}

func FuzzDecodeRaftMessage(f *testing.F) {
	for _, m := range sampleRaftMessages() {
		f.Add(AppendRaftMessage(nil, &m))
	}
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeRaftMessage(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptRaftMessage) {
				t.Fatalf("error does not wrap ErrCorruptRaftMessage: %v", err)
			}
			return
		}
		again := AppendRaftMessage(nil, &m)
		if !bytes.Equal(again, b) {
			// Varints have non-canonical encodings; the decoded value must
			// still round-trip exactly.
			m2, err := DecodeRaftMessage(again)
			if err != nil || !equalRaftMessages(&m, &m2) {
				t.Fatalf("re-encoding does not round-trip: %v", err)
			}
		}
	})
}
