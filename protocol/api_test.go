package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSubjects(t *testing.T) {
	cases := map[string]string{
		SubjectProduce("raftmq", "orders"):                     "raftmq.api.produce.orders",
		SubjectProduceAll("raftmq"):                            "raftmq.api.produce.>",
		SubjectBrokerProduce("c1", 3):                          "c1.api.broker.3.produce",
		SubjectBrokerFetch("c1", 3):                            "c1.api.broker.3.fetch",
		SubjectBrokerOffsets("c1", 3):                          "c1.api.broker.3.offsets",
		SubjectBrokerStatus("c1", 3):                           "c1.api.broker.3.status",
		SubjectBrokerAdmin("c1", 2, AdminCreateTopic):          "c1.api.broker.2.admin.topic.create",
		SubjectAdmin(DefaultSubjectPrefix, AdminClusterStatus): "raftmq.api.admin.cluster.status",
		SubjectStatusAll("raftmq"):                             "raftmq.api.status",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("subject %q, want %q", got, want)
		}
	}
	if topic, ok := TopicFromProduceSubject("raftmq", "raftmq.api.produce.eu.orders"); !ok || topic != "eu.orders" {
		t.Fatalf("TopicFromProduceSubject = %q %v", topic, ok)
	}
	if _, ok := TopicFromProduceSubject("raftmq", "other.api.produce.x"); ok {
		t.Fatal("foreign prefix accepted")
	}
}

func TestValidateTopicName(t *testing.T) {
	for _, good := range []string{"a", "orders", "eu.orders-v2_x", strings.Repeat("x", MaxTopicNameLength)} {
		if err := ValidateTopicName(good); err != nil {
			t.Errorf("%q rejected: %v", good, err)
		}
	}
	for _, bad := range []string{"", ".a", "a.", "a..b", "a b", "a*", "a>", "é", strings.Repeat("x", MaxTopicNameLength+1)} {
		if err := ValidateTopicName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPartitionForKeyIsStableAndInRange(t *testing.T) {
	if PartitionForKey([]byte("k"), 0) != 0 {
		t.Fatal("zero partitions")
	}
	// FNV-1a 32 of "hello" is 0x4f9f2cab; pin it so the SDK and broker agree forever.
	if got := PartitionForKey([]byte("hello"), 1000); got != 0x4f9f2cab%1000 {
		t.Fatalf("PartitionForKey(hello) = %d", got)
	}
	for i := 0; i < 100; i++ {
		if p := PartitionForKey([]byte{byte(i)}, 7); p < 0 || p >= 7 {
			t.Fatalf("partition %d out of range", p)
		}
	}
}

func TestProduceRoundTrip(t *testing.T) {
	batch := sealedTestBatch(t, []byte("payload"))
	req := ProduceRequest{Topic: "orders", Partition: 7, Acks: AcksApplied, Timeout: 1500 * time.Millisecond, Batch: batch}
	got, err := DecodeProduceRequest(AppendProduceRequest(nil, &req))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("got %+v want %+v", got, req)
	}
	for _, reply := range []ProduceReply{
		{BaseOffset: 42, AppendTime: 1700000000000},
		{Err: &Error{Code: CodeNotLeader, Leader: 3, Message: "partition 7"}},
		{Err: &Error{Code: CodeBatchTooLarge, Limit: 1 << 20, Message: "batch is 2 MiB"}},
	} {
		got, err := DecodeProduceReply(AppendProduceReply(nil, &reply))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, reply) {
			t.Fatalf("got %+v want %+v", got, reply)
		}
	}
}

func TestFetchRoundTrip(t *testing.T) {
	req := FetchRequest{Topic: "t", Partition: 1, Offset: 99, MaxBytes: 1 << 20, MaxWait: 2 * time.Second}
	got, err := DecodeFetchRequest(AppendFetchRequest(nil, &req))
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("got %+v %v want %+v", got, err, req)
	}
	b1 := sealedTestBatch(t, []byte("one"))
	b2 := sealedTestBatch(t, []byte("two!"))
	reply := FetchReply{HighWatermark: 10, LogStartOffset: 2, NextOffset: 8, Batches: append(append([]byte(nil), b1...), b2...)}
	gotReply, err := DecodeFetchReply(AppendFetchReply(nil, &reply))
	if err != nil || !reflect.DeepEqual(gotReply, reply) {
		t.Fatalf("got %+v %v", gotReply, err)
	}
	var seen [][]byte
	if err := SplitBatches(gotReply.Batches, func(b []byte, h BatchHeader) error {
		seen = append(seen, b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !bytes.Equal(seen[0], b1) || !bytes.Equal(seen[1], b2) {
		t.Fatalf("split %d batches", len(seen))
	}
	if err := SplitBatches(gotReply.Batches[:len(gotReply.Batches)-1], func([]byte, BatchHeader) error { return nil }); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("truncated concatenation: %v", err)
	}
	oor := FetchReply{Err: &Error{Code: CodeOffsetOutOfRange, Low: 5, High: 9}}
	gotReply, err = DecodeFetchReply(AppendFetchReply(nil, &oor))
	if err != nil || gotReply.Err.Low != 5 || gotReply.Err.High != 9 || gotReply.Batches != nil {
		t.Fatalf("out of range reply %+v %v", gotReply, err)
	}
	if !strings.Contains(gotReply.Err.Error(), "5..9") {
		t.Fatalf("message does not name the range: %v", gotReply.Err)
	}
}

func TestListOffsetsRoundTrip(t *testing.T) {
	req := ListOffsetsRequest{Topic: "t", Partition: 2, Timestamp: OffsetEarliest}
	got, err := DecodeListOffsetsRequest(AppendListOffsetsRequest(nil, &req))
	if err != nil || got != req {
		t.Fatalf("got %+v %v", got, err)
	}
	reply := ListOffsetsReply{Offset: 4, HighWatermark: 10, LogStartOffset: 1}
	gotReply, err := DecodeListOffsetsReply(AppendListOffsetsReply(nil, &reply))
	if err != nil || !reflect.DeepEqual(gotReply, reply) {
		t.Fatalf("got %+v %v", gotReply, err)
	}
}

func TestUnknownVersionIsUnsupported(t *testing.T) {
	b := AppendFetchRequest(nil, &FetchRequest{Topic: "t"})
	b[0] = APIVersion + 1
	_, err := DecodeFetchRequest(b)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != CodeUnsupportedVersion {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(err, CodeUnsupportedVersion) {
		t.Fatal("errors.Is by code failed")
	}
}

func TestTruncatedAndTrailingRejected(t *testing.T) {
	full := AppendFetchRequest(nil, &FetchRequest{Topic: "topic", Offset: 1})
	for n := 0; n < len(full); n++ {
		if _, err := DecodeFetchRequest(full[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	if _, err := DecodeFetchRequest(append(full, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
	bad := AppendProduceRequest(nil, &ProduceRequest{Topic: "t", Acks: 9})
	if _, err := DecodeProduceRequest(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad acks accepted: %v", err)
	}
}

func TestErrorCodesTable(t *testing.T) {
	seen := map[string]bool{}
	for i := range errorCodes {
		c := ErrorCode(i)
		name := c.String()
		if name == "" || seen[name] {
			t.Fatalf("code %d has empty or duplicate name %q", i, name)
		}
		seen[name] = true
		if back, ok := ParseErrorCode(name); !ok || back != c {
			t.Fatalf("ParseErrorCode(%q) = %d %v", name, back, ok)
		}
	}
	for _, c := range []ErrorCode{CodeNotLeader, CodeNotReady, CodeTimeout, CodeUnknownTopic, CodeShuttingDown, CodeOutOfOrderSequence, CodeUnknownProducer} {
		if !c.Retriable() {
			t.Errorf("%v should be retriable", c)
		}
	}
	for _, c := range []ErrorCode{CodeCorruptBatch, CodeBatchTooLarge, CodeBadPartition, CodeOffsetOutOfRange, CodeUnsupportedVersion} {
		if c.Retriable() {
			t.Errorf("%v should not be retriable", c)
		}
	}
	if ErrorCode(999).Retriable() || ErrorCode(999).String() != "code_999" {
		t.Fatal("unknown code")
	}
}

func TestErrorJSON(t *testing.T) {
	e := &Error{Code: CodeNotLeader, Leader: 2, Message: "m"}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"code":"not_leader"`) {
		t.Fatalf("json %s", b)
	}
	var back Error
	if err := json.Unmarshal(b, &back); err != nil || back != *e {
		t.Fatalf("back %+v %v", back, err)
	}
	ok, _ := json.Marshal(PublishReply{Partition: 1, Offset: 41})
	if string(ok) != `{"partition":1,"offset":41}` {
		t.Fatalf("publish reply %s", ok)
	}
	failed, _ := json.Marshal(PublishReply{Error: Errorf(CodeUnknownTopic, "topic %q", "x")})
	if string(failed) != `{"error":{"code":"unknown_topic","message":"topic \"x\""}}` {
		t.Fatalf("publish error reply %s", failed)
	}
}

func FuzzDecodeProduceRequest(f *testing.F) {
	f.Add(AppendProduceRequest(nil, &ProduceRequest{Topic: "t", Partition: 1, Batch: sealedTestBatch(f, []byte("x"))}))
	f.Add([]byte{APIVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeProduceRequest(b)
		if err != nil {
			return
		}
		again, err := DecodeProduceRequest(AppendProduceRequest(nil, &r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding changed %+v to %+v (%v)", r, again, err)
		}
	})
}

func FuzzDecodeFetchRequest(f *testing.F) {
	f.Add(AppendFetchRequest(nil, &FetchRequest{Topic: "t", Offset: 3, MaxBytes: 10}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeFetchRequest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(AppendFetchRequest(nil, &r), b) {
			t.Fatalf("accepted non-canonical encoding %x", b)
		}
	})
}

func FuzzDecodeReplies(f *testing.F) {
	f.Add(uint8(0), AppendProduceReply(nil, &ProduceReply{Err: &Error{Code: CodeNotLeader, Leader: 1}}))
	f.Add(uint8(1), AppendFetchReply(nil, &FetchReply{HighWatermark: 1, Batches: sealedTestBatch(f, []byte("b"))}))
	f.Add(uint8(2), AppendListOffsetsReply(nil, &ListOffsetsReply{Offset: 1}))
	f.Add(uint8(3), AppendListOffsetsRequest(nil, &ListOffsetsRequest{Topic: "t"}))
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		switch kind % 4 {
		case 0:
			if r, err := DecodeProduceReply(b); err == nil {
				if again, err := DecodeProduceReply(AppendProduceReply(nil, &r)); err != nil || !reflect.DeepEqual(again, r) {
					t.Fatalf("produce reply round trip %+v %+v %v", r, again, err)
				}
			}
		case 1:
			if r, err := DecodeFetchReply(b); err == nil {
				_ = SplitBatches(r.Batches, func([]byte, BatchHeader) error { return nil })
			}
		case 2:
			if r, err := DecodeListOffsetsReply(b); err == nil {
				if again, err := DecodeListOffsetsReply(AppendListOffsetsReply(nil, &r)); err != nil || !reflect.DeepEqual(again, r) {
					t.Fatalf("list offsets reply round trip %+v %+v %v", r, again, err)
				}
			}
		case 3:
			if r, err := DecodeListOffsetsRequest(b); err == nil && !bytes.Equal(AppendListOffsetsRequest(nil, &r), b) {
				t.Fatalf("non-canonical list offsets request %x", b)
			}
		}
	})
}
