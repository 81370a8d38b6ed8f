package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func sealedTestBatch(t testing.TB, payload []byte) []byte {
	t.Helper()
	b := make([]byte, BatchHeaderSize+len(payload))
	PutBatchHeader(b, &BatchHeader{
		Magic: BatchMagic, Codec: CodecNone, RecordCount: 3,
		FirstTimestamp: 1000, MaxTimestamp: 1002, ProducerID: -1, BaseSequence: 7,
	})
	copy(b[BatchHeaderSize:], payload)
	SealBatch(b)
	return b
}

func TestBatchHeaderRoundTrip(t *testing.T) {
	b := sealedTestBatch(t, []byte("records"))
	h, err := VerifyBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.RecordCount != 3 || h.FirstTimestamp != 1000 || h.MaxTimestamp != 1002 ||
		h.ProducerID != -1 || h.BaseSequence != 7 || int(h.Length) != len(b) {
		t.Fatalf("header fields lost: %+v", h)
	}
}

func TestStampBatchKeepsCRCValid(t *testing.T) {
	b := sealedTestBatch(t, []byte("records"))
	before := append([]byte(nil), b[batchCRCStart:]...)
	StampBatch(b, 1<<40, 1_700_000_000_000)
	h, err := VerifyBatch(b)
	if err != nil {
		t.Fatalf("stamped batch fails verification: %v", err)
	}
	if h.BaseOffset != 1<<40 || h.AppendTime != 1_700_000_000_000 || h.LastOffset() != 1<<40+2 {
		t.Fatalf("stamp not read back: %+v", h)
	}
	if !bytes.Equal(before, b[batchCRCStart:]) {
		t.Fatal("stamping changed bytes covered by the CRC")
	}
}

func TestSetBatchProducerRenumbersAndReseals(t *testing.T) {
	b := sealedTestBatch(t, []byte("records"))
	SetBatchProducer(b, 42, 3, 0)
	h, err := VerifyBatch(b)
	if err != nil {
		t.Fatalf("renumbered batch fails verification: %v", err)
	}
	if h.ProducerID != 42 || h.ProducerEpoch != 3 || h.BaseSequence != 0 || h.RecordCount != 3 || h.FirstTimestamp != 1000 {
		t.Fatalf("renumbering not read back, or other fields changed: %+v", h)
	}
	if !bytes.Equal(b[BatchHeaderSize:], []byte("records")) {
		t.Fatal("renumbering changed the records")
	}
}

func TestVerifyBatchDetectsEveryCoveredBitFlip(t *testing.T) {
	b := sealedTestBatch(t, []byte("some record bytes"))
	for pos := batchCRCStart; pos < len(b); pos++ {
		for bit := 0; bit < 8; bit++ {
			c := append([]byte(nil), b...)
			c[pos] ^= 1 << bit
			if _, err := VerifyBatch(c); !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("flip at byte %d bit %d not detected: %v", pos, bit, err)
			}
		}
	}
}

func TestVerifyBatchRejectsWrongLength(t *testing.T) {
	b := sealedTestBatch(t, []byte("abc"))
	if _, err := VerifyBatch(b[:len(b)-1]); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("short buffer accepted: %v", err)
	}
	if _, err := VerifyBatch(append(b, 0)); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("long buffer accepted: %v", err)
	}
	if _, err := ReadBatchHeader(b[:10]); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("truncated header accepted: %v", err)
	}
}

func FuzzVerifyBatch(f *testing.F) {
	f.Add(sealedTestBatch(f, []byte("seed")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := VerifyBatch(b)
		if err != nil {
			return
		}
		if int(h.Length) != len(b) || h.RecordCount == 0 || h.Magic != BatchMagic {
			t.Fatalf("accepted inconsistent batch: %+v", h)
		}
	})
}
