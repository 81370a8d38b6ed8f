package chaos

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// recordValueSize pads every record value to this many bytes.
const recordValueSize = 100

// recordValue is the value of the record with sequence number seq produced
// to partition: the test's producer for that partition numbers its records
// 0, 1, 2, ... in the order it produces them.
func recordValue(partition uint32, seq uint64) []byte {
	value := fmt.Appendf(nil, "chaos partition=%d seq=%d ", partition, seq)
	for len(value) < recordValueSize {
		value = append(value, '.')
	}
	return value
}

// parseRecordValue reverses recordValue.
func parseRecordValue(value string) (partition uint32, seq uint64, ok bool) {
	n, err := fmt.Sscanf(value, "chaos partition=%d seq=%d ", &partition, &seq)
	if err != nil || n != 2 || value != string(recordValue(partition, seq)) {
		return 0, 0, false
	}
	return partition, seq, true
}

// loggedRecord is one record of the final log, read from earliest to the
// high watermark.
type loggedRecord struct {
	offset uint64
	value  string
}

// ackedRecord is one record the cluster acknowledged (acks=quorum), with
// the offset the acknowledgement named.
type ackedRecord struct {
	seq    uint64
	offset uint64
}

// partitionHistory is everything the test saw of one partition.
type partitionHistory struct {
	partition     uint32
	logStart      uint64
	highWatermark uint64
	// log is the final read: every record from logStart up to highWatermark.
	log []loggedRecord
	// acked lists the acknowledged records in the order the producer got
	// the acknowledgements (which is its produce order).
	acked []ackedRecord
	// issued is how many sequence numbers the producer handed out; a record
	// in the log with seq >= issued was never produced.
	issued uint64
	// failures counts the produces that failed for good; only they may
	// leave sequence numbers out of the log.
	failures int
	// observed holds what a consumer running during the faults was served:
	// offset -> value.
	observed map[uint64]string
}

// duplicate is a record (one sequence number) found at several offsets.
type duplicate struct {
	seq     uint64
	offsets []uint64
	acked   bool
}

// verdict is the outcome of checking one partition.
type verdict struct {
	// violations break a property the cluster guarantees.
	violations []string
	// duplicates are records written more than once. The SDK's idempotent
	// producer (its default) rules them out, so the test fails on them.
	duplicates []duplicate
	// unackedPresent counts records in the log whose produce was never
	// acknowledged (it failed or the run ended first): allowed.
	unackedPresent int
}

// maxViolations bounds the messages of one verdict.
const maxViolations = 20

func (v *verdict) violate(format string, args ...any) {
	if len(v.violations) == maxViolations {
		v.violations = append(v.violations, "... (more violations not listed)")
	}
	if len(v.violations) < maxViolations {
		v.violations = append(v.violations, fmt.Sprintf(format, args...))
	}
}

// checkPartition checks one partition's history:
//
//   - the log is dense: offsets logStart, logStart+1, ... up to the high
//     watermark, one record each;
//   - every record in it is one the producer of this partition produced;
//   - sequence numbers increase by exactly one along the log (the
//     idempotent producer neither duplicates nor reorders records); they
//     may skip only when some produce of the partition failed;
//   - every acknowledged record is in the log at the offset its
//     acknowledgement named, and acknowledgements came in offset order;
//   - everything the concurrent consumer was served is in the final log,
//     with the same bytes at the same offset (nothing was served before it
//     was committed and then lost or replaced).
func checkPartition(h partitionHistory) verdict {
	var v verdict
	if want := h.highWatermark - h.logStart; h.highWatermark < h.logStart || uint64(len(h.log)) != want {
		v.violate("partition %d: read %d records between log start %d and high watermark %d",
			h.partition, len(h.log), h.logStart, h.highWatermark)
	}
	seqAt := make(map[uint64]uint64, len(h.log)) // offset -> seq
	present := map[uint64][]uint64{}             // seq -> offsets
	var previousSeq uint64
	previousValid := false
	for i, record := range h.log {
		if want := h.logStart + uint64(i); record.offset != want {
			v.violate("partition %d: offset %d where %d was due (offsets not dense)", h.partition, record.offset, want)
		}
		partition, seq, ok := parseRecordValue(record.value)
		switch {
		case !ok:
			v.violate("partition %d offset %d: record %q was never produced", h.partition, record.offset, record.value)
			continue
		case partition != h.partition:
			v.violate("partition %d offset %d: record of partition %d's producer", h.partition, record.offset, partition)
			continue
		case seq >= h.issued:
			v.violate("partition %d offset %d: seq %d was never produced (%d issued)", h.partition, record.offset, seq, h.issued)
		}
		switch {
		case previousValid && seq <= previousSeq:
			v.violate("partition %d offset %d: seq %d after seq %d (duplicated or reordered)", h.partition, record.offset, seq, previousSeq)
		case previousValid && seq > previousSeq+1 && h.failures == 0:
			v.violate("partition %d offset %d: seq %d follows seq %d, though no produce failed", h.partition, record.offset, seq, previousSeq)
		}
		previousSeq, previousValid = seq, true
		seqAt[record.offset] = seq
		present[seq] = append(present[seq], record.offset)
	}

	ackedSeqs := make(map[uint64]bool, len(h.acked))
	for i, ack := range h.acked {
		ackedSeqs[ack.seq] = true
		if i > 0 && (ack.seq <= h.acked[i-1].seq || ack.offset <= h.acked[i-1].offset) {
			v.violate("partition %d: acknowledgement of seq %d at offset %d came after seq %d at offset %d",
				h.partition, ack.seq, ack.offset, h.acked[i-1].seq, h.acked[i-1].offset)
		}
		seq, ok := seqAt[ack.offset]
		switch {
		case !ok && len(present[ack.seq]) == 0:
			v.violate("partition %d: acknowledged seq %d (offset %d) is lost", h.partition, ack.seq, ack.offset)
		case !ok:
			v.violate("partition %d: acknowledged seq %d was acknowledged at offset %d but is at %v",
				h.partition, ack.seq, ack.offset, present[ack.seq])
		case seq != ack.seq:
			v.violate("partition %d: offset %d holds seq %d, but seq %d was acknowledged there",
				h.partition, ack.offset, seq, ack.seq)
		}
	}

	for seq, offsets := range present {
		if len(offsets) > 1 {
			v.duplicates = append(v.duplicates, duplicate{seq: seq, offsets: offsets, acked: ackedSeqs[seq]})
			v.violate("partition %d: seq %d written %d times, at offsets %v", h.partition, seq, len(offsets), offsets)
		}
		if !ackedSeqs[seq] {
			v.unackedPresent++
		}
	}
	slices.SortFunc(v.duplicates, func(a, b duplicate) int { return cmp.Compare(a.offsets[0], b.offsets[0]) })

	observedOffsets := make([]uint64, 0, len(h.observed))
	for offset := range h.observed {
		observedOffsets = append(observedOffsets, offset)
	}
	slices.Sort(observedOffsets)
	for _, offset := range observedOffsets {
		value := h.observed[offset]
		if offset < h.logStart || offset >= h.logStart+uint64(len(h.log)) {
			v.violate("partition %d: a consumer was served offset %d (%.40q), which the final log [%d, %d) lacks",
				h.partition, offset, value, h.logStart, h.logStart+uint64(len(h.log)))
			continue
		}
		if final := h.log[offset-h.logStart].value; final != value {
			v.violate("partition %d offset %d: a consumer was served %.40q, the final log holds %.40q",
				h.partition, offset, value, final)
		}
	}
	return v
}

func (d duplicate) String() string {
	state := "never acknowledged"
	if d.acked {
		state = "acknowledged once"
	}
	return fmt.Sprintf("seq %d at offsets %v (%s)", d.seq, d.offsets, state)
}

// TestCheckPartition shows the checker catches each kind of violation.
func TestCheckPartition(t *testing.T) {
	logOf := func(seqs ...uint64) []loggedRecord {
		log := make([]loggedRecord, len(seqs))
		for i, seq := range seqs {
			log[i] = loggedRecord{offset: uint64(i), value: string(recordValue(0, seq))}
		}
		return log
	}
	good := func() partitionHistory {
		return partitionHistory{
			log:           logOf(0, 1, 2, 3, 4),
			highWatermark: 5,
			acked:         []ackedRecord{{seq: 0, offset: 0}, {seq: 1, offset: 1}, {seq: 2, offset: 2}, {seq: 4, offset: 4}},
			issued:        6,
			observed:      map[uint64]string{0: string(recordValue(0, 0)), 3: string(recordValue(0, 3))},
		}
	}
	v := checkPartition(good())
	if len(v.violations) != 0 {
		t.Fatalf("a good history has violations: %v", v.violations)
	}
	if len(v.duplicates) != 0 {
		t.Fatalf("duplicates = %v, want none", v.duplicates)
	}
	if v.unackedPresent != 1 { // seq 3
		t.Fatalf("unackedPresent = %d, want 1", v.unackedPresent)
	}

	cases := []struct {
		name    string
		corrupt func(h *partitionHistory)
		want    string
	}{
		{"lost acknowledged record", func(h *partitionHistory) {
			h.log, h.highWatermark = logOf(0, 1, 2, 3), 4
		}, "seq 4 (offset 4) is lost"},
		{"record at another offset than acknowledged", func(h *partitionHistory) {
			h.acked[3].offset = 3
		}, "offset 3 holds seq 3, but seq 4 was acknowledged there"},
		{"gap in offsets", func(h *partitionHistory) {
			h.log = slices.Delete(h.log, 3, 4)
		}, "not dense"},
		{"short read", func(h *partitionHistory) {
			h.highWatermark = 6
		}, "read 5 records between log start 0 and high watermark 6"},
		{"reordered", func(h *partitionHistory) {
			h.log[3].value, h.log[4].value = h.log[4].value, h.log[3].value
			h.acked = h.acked[:3]
		}, "seq 3 after seq 4"},
		{"duplicate", func(h *partitionHistory) {
			h.log, h.highWatermark = logOf(0, 1, 2, 2, 3, 4), 6
			h.acked[3].offset = 5
		}, "seq 2 written 2 times, at offsets [2 3]"},
		{"sequence gap without a failed produce", func(h *partitionHistory) {
			h.log, h.highWatermark = logOf(0, 1, 2, 4), 4
			h.acked[3].offset = 3
			delete(h.observed, 3)
		}, "seq 4 follows seq 2, though no produce failed"},
		{"foreign record", func(h *partitionHistory) {
			h.log[3].value = "hello"
		}, "was never produced"},
		{"never issued", func(h *partitionHistory) {
			h.issued = 4
		}, "seq 4 was never produced"},
		{"served then lost", func(h *partitionHistory) {
			h.observed[5] = string(recordValue(0, 5))
		}, "served offset 5"},
		{"served then replaced", func(h *partitionHistory) {
			h.observed[3] = string(recordValue(0, 9))
		}, "the final log holds"},
		{"acknowledgements out of order", func(h *partitionHistory) {
			h.acked[1], h.acked[2] = h.acked[2], h.acked[1]
		}, "came after"},
	}
	// A failed produce may leave its sequence number out.
	failed := good()
	failed.log, failed.highWatermark, failed.failures = logOf(0, 1, 2, 4), 4, 1
	failed.acked[3].offset = 3
	delete(failed.observed, 3)
	if v := checkPartition(failed); len(v.violations) != 0 {
		t.Fatalf("a gap after a failed produce is a violation: %v", v.violations)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := good()
			tc.corrupt(&h)
			v := checkPartition(h)
			if !strings.Contains(strings.Join(v.violations, "\n"), tc.want) {
				t.Fatalf("violations %q lack %q", v.violations, tc.want)
			}
		})
	}
}
