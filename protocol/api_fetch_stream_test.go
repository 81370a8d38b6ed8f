package protocol

import (
	"errors"
	"reflect"
	"testing"
)

func TestFetchRequestMaxRepliesRoundTrip(t *testing.T) {
	for _, maxReplies := range []uint8{0, 2, 255} {
		req := FetchRequest{Topic: "t", Partition: 1, Offset: 99, MaxBytes: 1 << 20, MaxReplies: maxReplies}
		encoded := AppendFetchRequest(nil, &req)
		got, err := DecodeFetchRequest(encoded)
		if err != nil || !reflect.DeepEqual(got, req) {
			t.Fatalf("max replies %d: got %+v %v", maxReplies, got, err)
		}
		if withField := maxReplies > 1; withField != (len(encoded) == len(AppendFetchRequest(nil, &FetchRequest{Topic: "t"}))+1) {
			t.Fatalf("max replies %d: %d bytes", maxReplies, len(encoded))
		}
	}
	// One reply is asked for by leaving the field out; writing 1 is not canonical.
	one := append(AppendFetchRequest(nil, &FetchRequest{Topic: "t"}), 1)
	if _, err := DecodeFetchRequest(one); !errors.Is(err, ErrMalformed) {
		t.Fatalf("max replies written as 1: %v", err)
	}
}

func TestFetchStreamContinues(t *testing.T) {
	data := FetchReply{HighWatermark: 100, NextOffset: 50, Batches: []byte{1}}
	for _, c := range []struct {
		name       string
		reply      FetchReply
		n          int
		maxReplies uint8
		want       bool
	}{
		{"more data below the high watermark", data, 1, 4, true},
		{"third of four", data, 3, 4, true},
		{"last allowed", data, 4, 4, false},
		{"one reply asked for", data, 1, 0, false},
		{"reached the high watermark", FetchReply{HighWatermark: 50, NextOffset: 50, Batches: []byte{1}}, 1, 4, false},
		{"no batches", FetchReply{HighWatermark: 100, NextOffset: 50}, 1, 4, false},
		{"error", FetchReply{Err: &Error{Code: CodeNotLeader}, HighWatermark: 100, NextOffset: 50, Batches: []byte{1}}, 1, 4, false},
	} {
		if got := FetchStreamContinues(&c.reply, c.n, c.maxReplies); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
