package protocol

import "testing"

// TestBatchBuilderGrowReservesRecordBytes checks that records adding up to
// the reserved size are encoded without reallocating the records section,
// and that the batch is the same as one built without Grow.
func TestBatchBuilderGrowReservesRecordBytes(t *testing.T) {
	value := make([]byte, 100)
	record := Record{Timestamp: 1_700_000_000_000, Value: value}
	const records = 50
	reserve := records * EncodedRecordSize(&record, record.Timestamp)

	var grown, plain BatchBuilder
	grown.Grow(reserve)
	capacity := cap(grown.records)
	if capacity < reserve {
		t.Fatalf("Grow(%d) left capacity %d", reserve, capacity)
	}
	for range records {
		if err := grown.Add(record); err != nil {
			t.Fatal(err)
		}
		if err := plain.Add(record); err != nil {
			t.Fatal(err)
		}
	}
	if cap(grown.records) != capacity {
		t.Errorf("records section reallocated: capacity %d, reserved %d", cap(grown.records), capacity)
	}
	a, err := grown.Build(CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	b, err := plain.Build(CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Error("a batch built after Grow differs from one built without")
	}
	grown.Grow(0) // no-op
	grown.Grow(-1)
}
