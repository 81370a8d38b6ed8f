package protocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestConsumerOpsRoundTrip(t *testing.T) {
	ops := []ConsumerOp{
		{Kind: ConsumerOpCommit, Group: "billing", Member: "m-1", Epoch: 7, Offset: 42, Metadata: "meta", Time: 1700000000000},
		{Kind: ConsumerOpClaim, Group: "billing", Member: "m-2", Epoch: 9},
		{Kind: ConsumerOpReset, Group: "g", Offset: 3},
		{Kind: ConsumerOpDelete, Group: "g"},
		{Kind: ConsumerOpDeleteAndFence, Group: "g", Epoch: 30},
	}
	data := AppendConsumerOps(nil, ops)
	if n := ConsumerOpsSize(ops); n != len(data) {
		t.Fatalf("ConsumerOpsSize says %d bytes, AppendConsumerOps wrote %d", n, len(data))
	}
	got, err := DecodeConsumerOps(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Fatalf("round trip: got %+v, want %+v", got, ops)
	}
	for cut := range len(data) {
		if _, err := DecodeConsumerOps(data[:cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	bad := append([]byte(nil), data...)
	bad[6] = 99 // first op's kind
	if _, err := DecodeConsumerOps(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad kind accepted: %v", err)
	}
}

func TestValidateGroupName(t *testing.T) {
	for _, good := range []string{"g", "billing-v2", "a.b_c"} {
		if err := ValidateGroupName(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	// Empty dot-separated parts: the name is a token of the group's
	// subjects, which NATS refuses with an empty token.
	for _, bad := range []string{"", "a b", "x*", string(make([]byte, 201)), "g.", ".g", "a..b"} {
		if err := ValidateGroupName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A name that may refer to a group named under the older rule keeps
	// only the characters and length rules.
	for _, old := range []string{"g.", ".g", "a..b"} {
		if err := ValidateExistingGroupName(old); err != nil {
			t.Errorf("existing group %q: %v", old, err)
		}
	}
	for _, bad := range []string{"", "a b", "x*", string(make([]byte, 201))} {
		if err := ValidateExistingGroupName(bad); err == nil {
			t.Errorf("existing group %q accepted", bad)
		}
	}
	// Member ids are no subject token.
	if err := ValidateMemberID("a..b."); err != nil {
		t.Errorf("member id: %v", err)
	}
}

func FuzzDecodeConsumerOps(f *testing.F) {
	f.Add(AppendConsumerOps(nil, []ConsumerOp{{Kind: ConsumerOpCommit, Group: "g", Member: "m", Epoch: 1, Offset: 2}}))
	f.Add([]byte{ControlConsumerOps, 1, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := DecodeConsumerOps(data)
		if err != nil {
			return
		}
		again, err := DecodeConsumerOps(AppendConsumerOps(nil, ops))
		if err != nil || !reflect.DeepEqual(again, ops) {
			t.Fatalf("re-encode of %+v: %+v %v", ops, again, err)
		}
	})
}

// Seq is omitted when 0 (a request from a client without sequence
// numbers reads the same as before) and round-trips otherwise.
func TestHeartbeatRequestSeq(t *testing.T) {
	old, err := json.Marshal(HeartbeatRequest{Version: 1, Group: "g", Member: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(old), "seq") {
		t.Fatalf("Seq 0 encoded: %s", old)
	}
	data, err := json.Marshal(HeartbeatRequest{Version: 1, Group: "g", Member: "m", Seq: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	var back HeartbeatRequest
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Seq != 1<<62 || !strings.Contains(string(data), `"seq":`) {
		t.Fatalf("decoded seq %d from %s", back.Seq, data)
	}
}
