package clients

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// TestPollEachAndPollShareTheBuffer interleaves PollEach (stopping early,
// and running to the max poll records) with Poll, so batches are handed out
// part by part, and checks that every record comes out once, in order, from
// plain and compressed batches.
func TestPollEachAndPollShareTheBuffer(t *testing.T) {
	for _, codec := range []Codec{CompressionNone, CompressionS2} {
		t.Run(codec.String(), func(t *testing.T) { testPollEachAndPollShareTheBuffer(t, codec) })
	}
}

func testPollEachAndPollShareTheBuffer(t *testing.T, codec Codec) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("a", 150), WithCompression(codec))
	produceValues(t, client, "orders", 0, numbered("b", 150), WithCompression(codec))

	consumer, err := client.NewConsumer(WithMaxPollRecords(64))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	var got []string
	var offsets []uint64
	for round := 0; len(got) < 300; round++ {
		switch round % 3 {
		case 0: // stop after 10
			stopAt := len(got) + 10
			n, err := consumer.PollEach(ctx, func(r *Record) bool {
				got = append(got, string(r.Value))
				offsets = append(offsets, r.Offset)
				return len(got) < stopAt
			})
			if err != nil || n > 10 {
				t.Fatalf("PollEach stopping at 10: %d records, %v", n, err)
			}
		case 1:
			n, err := consumer.PollEach(ctx, func(r *Record) bool {
				got = append(got, string(r.Value))
				offsets = append(offsets, r.Offset)
				return true
			})
			if err != nil || n > 64 {
				t.Fatalf("PollEach: %d records (max poll records 64), %v", n, err)
			}
		case 2:
			records, err := consumer.Poll(ctx)
			if err != nil || len(records) > 64 {
				t.Fatalf("Poll: %d records (max poll records 64), %v", len(records), err)
			}
			for _, r := range records {
				got = append(got, string(r.Value))
				offsets = append(offsets, r.Offset)
			}
		}
	}
	if want := append(numbered("a", 150), numbered("b", 150)...); !slices.Equal(got, want) {
		t.Errorf("got %d values, want the 300 produced in order; first difference at %d", len(got), firstDifference(got, want))
	}
	for i, offset := range offsets {
		if offset != uint64(i) {
			t.Fatalf("record %d has offset %d", i, offset)
		}
	}
}

func firstDifference(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPollEachCallbackMaySeek seeks from inside the callback (which runs
// without the consumer's lock) and checks that the records not handed out
// before the seek are dropped.
func TestPollEachCallbackMaySeek(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 20))

	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	var seekErr error
	n, err := consumer.PollEach(ctx, func(r *Record) bool {
		if r.Offset == 5 {
			seekErr = consumer.Seek(ctx, "orders", 0, AtOffset(15))
			return false
		}
		return true
	})
	if err != nil || seekErr != nil || n != 6 {
		t.Fatalf("PollEach: %d records, %v; seek: %v", n, err, seekErr)
	}
	if got := pollValues(t, consumer, 5)[0]; !slices.Equal(got, numbered("v", 20)[15:]) {
		t.Errorf("after seeking to 15: %v", got)
	}
}

// TestPollEachSeekInCallbackDropsStaleRecords: a callback that seeks (or
// unassigns) and goes on (returns true) gets no more of the records fetched
// before the seek, neither in that PollEach call nor later: the next
// record is the one sought. (Only one partition is assigned, so that call
// has nothing more to hand out.)
func TestPollEachSeekInCallbackDropsStaleRecords(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 20))

	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	var afterSeek []uint64
	sought := false
	n, err := consumer.PollEach(ctx, func(r *Record) bool {
		if sought {
			afterSeek = append(afterSeek, r.Offset)
		}
		if r.Offset == 5 && !sought {
			sought = true
			if err := consumer.Seek(ctx, "orders", 0, AtOffset(15)); err != nil {
				t.Error(err)
			}
		}
		return true
	})
	if len(afterSeek) > 0 {
		t.Fatalf("after Seek(15) in the callback, PollEach went on with offsets %v", afterSeek)
	}
	if err != nil || n != 6 {
		t.Fatalf("PollEach: %d records, %v", n, err)
	}
	if got := pollValues(t, consumer, 5)[0]; !slices.Equal(got, numbered("v", 20)[15:]) {
		t.Errorf("after seeking to 15: %v", got)
	}
}

// TestPollEachUnassignInCallbackDropsOtherPartition: records of another
// partition, fetched and waiting behind the callback's own, are dropped
// once the callback unassigns that partition.
func TestPollEachUnassignInCallbackDropsOtherPartition(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 2)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("a", 10))
	produceValues(t, client, "orders", 1, numbered("b", 10))

	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // both partitions fetched
	first, handedOut := -1, map[int]int{}
	_, err = consumer.PollEach(ctx, func(r *Record) bool {
		if first < 0 {
			first = int(r.Partition)
			consumer.Unassign("orders", uint32(1-first))
		}
		handedOut[int(r.Partition)]++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if handedOut[1-first] != 0 {
		t.Fatalf("handed out %d records of partition %d after unassigning it in the callback", handedOut[1-first], 1-first)
	}
}

// TestConsumerPipelinesFetches checks that the fetcher asks for the next
// batches as soon as a reply arrives, before anyone polls.
func TestConsumerPipelinesFetches(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	value := strings.Repeat("x", 100)
	produceValues(t, client, "orders", 0, slices.Repeat([]string{value}, 20)) // offsets 0-19, > 2 KiB
	produceValues(t, client, "orders", 0, slices.Repeat([]string{value}, 20)) // offsets 20-39

	requested := f.watchFetches(t)
	// One batch per fetch, one reply per request (streams: TestConsumerStreamsFetches).
	consumer, err := client.NewConsumer(WithFetchMaxBytes(1024), WithFetchReplies(1))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx := testContext(t)
	if err := consumer.Assign(ctx, "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	// Nobody polls: the first fetch's records wait for Poll, and the
	// second fetch is already on its way, from where the first reply
	// ended. (Where that is depends on how the producer split the records
	// into batches: it sends a partition's first record at once.)
	var offsets []uint64
	for len(offsets) < 2 {
		select {
		case request := <-requested:
			offsets = append(offsets, request.Offset)
		case <-ctx.Done():
			t.Fatalf("fetches requested before any poll: %v, want 2", offsets)
		}
	}
	if offsets[0] != 0 || offsets[1] == 0 || offsets[1] >= 40 {
		t.Fatalf("fetches at offsets %v, want 0 then the end of the first reply", offsets)
	}
	if got := pollValues(t, consumer, 40)[0]; len(got) != 40 {
		t.Errorf("%d records, want 40", len(got))
	}
}

// TestConsumerReportsCorruptBatch corrupts a stored batch and checks that
// Poll reports a partition error of the corruption class.
func TestConsumerReportsCorruptBatch(t *testing.T) {
	f := startFakeCluster(t)
	f.createTopic("orders", 1)
	client := newTestClient(t, f)
	produceValues(t, client, "orders", 0, numbered("v", 5))
	f.mu.Lock()
	batch := f.topics["orders"].partitions[0].batches[0]
	batch[len(batch)-1] ^= 0xff // the last byte: the CRC no longer matches
	f.mu.Unlock()

	consumer, err := client.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	if err := consumer.Assign(testContext(t), "orders", Earliest()); err != nil {
		t.Fatal(err)
	}
	n, err := consumer.PollEach(testContext(t), func(*Record) bool { return true })
	var partitionErr *PartitionError
	if n != 0 || !errors.As(err, &partitionErr) || !errors.Is(err, protocol.ErrCorruptBatch) {
		t.Fatalf("got %d records, %v; want a partition error of the corrupt batch class", n, err)
	}
}

// TestVerifyFetched checks how a fetch's batches are trimmed and counted.
func TestVerifyFetched(t *testing.T) {
	var data []byte
	for base := uint64(0); base < 30; base += 10 {
		data = appendStampedBatch(t, data, base, 10)
	}
	tests := []struct {
		offset, replyNext uint64
		wantBytes         int // of data, from the end
		wantPending       int
		wantNext          uint64
	}{
		{offset: 0, replyNext: 30, wantBytes: len(data), wantPending: 30, wantNext: 30},
		{offset: 15, replyNext: 30, wantBytes: len(data) * 2 / 3, wantPending: 15, wantNext: 30},
		{offset: 15, replyNext: 0, wantBytes: len(data) * 2 / 3, wantPending: 15, wantNext: 30},
		{offset: 29, replyNext: 40, wantBytes: len(data) / 3, wantPending: 1, wantNext: 40},
		{offset: 30, replyNext: 30, wantBytes: 0, wantPending: 0, wantNext: 30},
	}
	for _, test := range tests {
		t.Run(fmt.Sprintf("offset %d", test.offset), func(t *testing.T) {
			result, next, err := verifyFetched(data, test.replyNext, test.offset)
			if err != nil {
				t.Fatal(err)
			}
			if len(result.batches) != test.wantBytes || result.pending != test.wantPending || next != test.wantNext || result.offset != test.offset {
				t.Errorf("got %d bytes, %d pending, next %d, offset %d; want %d, %d, %d, %d", len(result.batches), result.pending,
					next, result.offset, test.wantBytes, test.wantPending, test.wantNext, test.offset)
			}
		})
	}
	corrupt := slices.Clone(data)
	corrupt[len(corrupt)-1] ^= 1
	if _, _, err := verifyFetched(corrupt, 30, 0); !errors.Is(err, protocol.ErrCorruptBatch) {
		t.Errorf("corrupt last batch: %v, want ErrCorruptBatch", err)
	}
	if _, _, err := verifyFetched(data[:len(data)-1], 30, 0); !errors.Is(err, protocol.ErrCorruptBatch) {
		t.Errorf("truncated last batch: %v, want ErrCorruptBatch", err)
	}
}

// appendStampedBatch appends a batch of records at baseOffset on, stamped
// as the log stamps it.
func appendStampedBatch(t *testing.T, dst []byte, baseOffset uint64, records int) []byte {
	t.Helper()
	var builder protocol.BatchBuilder
	for i := range records {
		if err := builder.Add(protocol.Record{Timestamp: 1_700_000_000_000, Value: fmt.Appendf(nil, "value-%04d", int(baseOffset)+i)}); err != nil {
			t.Fatal(err)
		}
	}
	start := len(dst)
	dst, err := builder.AppendBatch(dst, protocol.CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	protocol.StampBatch(dst[start:], baseOffset, 1_700_000_000_000)
	return dst
}
