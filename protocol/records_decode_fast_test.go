package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// iterate walks batch with Reset and Next (plain false) or ResetVerified
// and NextPlain (plain true) and returns every record (bytes copied) and
// the error that ended the walk, as text.
func iterate(batch []byte, plain bool) ([]Record, string) {
	it := RecordIterator{MaxDecompressedSize: 16 << 20}
	reset, next := it.Reset, it.Next
	if plain {
		reset, next = it.ResetVerified, it.NextPlain
	}
	if err := reset(batch); err != nil {
		return nil, err.Error()
	}
	var out []Record
	for next() {
		r := it.Record()
		out = append(out, Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: clone(r.Key), Value: clone(r.Value), Headers: cloneHeaders(r.Headers)})
	}
	if err := it.Err(); err != nil {
		return out, err.Error()
	}
	return out, ""
}

// checkSameAsNext fails unless NextPlain yields exactly what Next yields on
// batch (records, nil-ness of keys and values, and errors).
func checkSameAsNext(t *testing.T, batch []byte) {
	t.Helper()
	want, wantErr := iterate(batch, false)
	got, gotErr := iterate(batch, true)
	if !reflect.DeepEqual(got, want) || gotErr != wantErr {
		t.Fatalf("NextPlain: %d records, error %q; Next: %d records, error %q", len(got), gotErr, len(want), wantErr)
	}
}

func TestNextPlainDecodesLikeNext(t *testing.T) {
	for _, codec := range allCodecs {
		for _, count := range []int{1, 63, 64, 200, 20_000} { // offset deltas of 1, 2 and 3 bytes
			t.Run(fmt.Sprintf("%v/%d", codec, count), func(t *testing.T) {
				var builder BatchBuilder
				records := testRecords()
				for i := range count {
					r := records[i%len(records)]
					if i%500 == 7 {
						r.Value = bytes.Repeat([]byte("x"), 9000) // a 3-byte length
					}
					if err := builder.Add(r); err != nil {
						t.Fatal(err)
					}
				}
				batch, err := builder.AppendBatch(nil, codec)
				if err != nil {
					t.Fatal(err)
				}
				StampBatch(batch, 1000, 0)
				records, errText := iterate(batch, true)
				if errText != "" || len(records) != count || records[count-1].Offset != 1000+uint64(count-1) {
					t.Fatalf("%d records of %d, error %q", len(records), count, errText)
				}
				checkSameAsNext(t, batch)
			})
		}
	}
}

func TestNextPlainRejectsLikeNext(t *testing.T) {
	var builder BatchBuilder
	for i := range 3 {
		builder.Add(Record{Timestamp: 100 + int64(i), Value: []byte("value")})
	}
	good, err := builder.AppendBatch(nil, CodecNone)
	if err != nil {
		t.Fatal(err)
	}
	section := good[BatchHeaderSize:]
	// Every single-byte change of the records section, resealed so the CRC
	// passes: NextPlain must accept and reject exactly what Next does.
	for pos := range section {
		for _, value := range []byte{0, 1, 2, 0x7f, 0x80, 0xff, section[pos] + 1, section[pos] - 1} {
			mutated := bytes.Clone(section)
			mutated[pos] = value
			checkSameAsNext(t, sealRecords(mutated, CodecNone, 3, 100, 102))
		}
	}
	// A batch whose header disagrees with its length fails ResetVerified too.
	if _, errText := iterate(good[:len(good)-1], true); errText == "" {
		t.Fatal("ResetVerified accepted a truncated batch")
	}
	corrupt := bytes.Clone(good)
	corrupt[BatchHeaderSize] ^= 0xff
	if _, err := VerifyBatch(corrupt); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("VerifyBatch = %v", err) // ResetVerified trusts the caller for this one
	}
}

func FuzzNextPlain(f *testing.F) {
	var builder BatchBuilder
	for _, r := range testRecords() {
		builder.Add(r)
	}
	batch, _ := builder.AppendBatch(nil, CodecNone)
	f.Add(batch[BatchHeaderSize:], uint32(4), int64(1_700_000_000_000), int64(1_700_000_000_100))
	f.Add([]byte{9, 0, 2, 0, 1, 3, 'a', 'b', 'c', 0}, uint32(1), int64(0), int64(5))
	f.Fuzz(func(t *testing.T, section []byte, count uint32, first, maxTimestamp int64) {
		checkSameAsNext(t, sealRecords(section, CodecNone, count, first, maxTimestamp))
	})
}

func BenchmarkNextPlain(b *testing.B) {
	var builder BatchBuilder
	value := make([]byte, 100)
	for range 2000 {
		builder.Add(Record{Timestamp: 1_700_000_000_000, Value: value})
	}
	batch, err := builder.AppendBatch(nil, CodecNone)
	if err != nil {
		b.Fatal(err)
	}
	for _, plain := range []bool{false, true} {
		b.Run(fmt.Sprintf("plain=%v", plain), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			var it RecordIterator
			reset, next := it.Reset, it.Next
			if plain {
				reset, next = it.ResetVerified, it.NextPlain
			}
			for range b.N {
				if err := reset(batch); err != nil {
					b.Fatal(err)
				}
				for next() {
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2000), "ns/record")
		})
	}
}
