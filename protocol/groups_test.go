package protocol

import (
	"errors"
	"reflect"
	"testing"
)

func TestConsumerOpsRoundTrip(t *testing.T) {
	ops := []ConsumerOp{
		{Kind: ConsumerOpCommit, Group: "billing", Member: "m-1", Epoch: 7, Offset: 42, Metadata: "meta", Time: 1700000000000},
		{Kind: ConsumerOpClaim, Group: "billing", Member: "m-2", Epoch: 9},
		{Kind: ConsumerOpReset, Group: "g", Offset: 3},
		{Kind: ConsumerOpDelete, Group: "g"},
	}
	data := AppendConsumerOps(nil, ops)
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
	for _, bad := range []string{"", "a b", "x*", string(make([]byte, 201))} {
		if err := ValidateGroupName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
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
