package transport

import (
	"bytes"
	"errors"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	frames := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("x"), 300)}
	msg := appendEnvelopeHeader(nil, 1<<40)
	for _, f := range frames {
		msg = appendFrame(msg, f)
	}
	var got [][]byte
	n, err := decodeEnvelope(msg, func(from uint64, frame []byte) {
		if from != 1<<40 {
			t.Fatalf("sender %d, want %d", from, uint64(1<<40))
		}
		got = append(got, frame)
	})
	if err != nil || n != len(frames) {
		t.Fatalf("decode: %d frames, %v", n, err)
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d: got %q want %q", i, got[i], frames[i])
		}
	}
	if countFrames(msg) != len(frames) {
		t.Fatalf("countFrames = %d", countFrames(msg))
	}
}

func TestEnvelopeRejectsCorruptionWithoutDelivering(t *testing.T) {
	good := appendFrame(appendFrame(appendEnvelopeHeader(nil, 7), []byte("one")), []byte("two"))
	cases := map[string][]byte{
		"empty":         {},
		"version":       append([]byte{2}, good[1:]...),
		"no frames":     appendEnvelopeHeader(nil, 7),
		"sender zero":   appendFrame(appendEnvelopeHeader(nil, 0), []byte("x")),
		"truncated":     good[:len(good)-1],
		"bad sender":    {EnvelopeVersion, 0x80},
		"length beyond": append(appendEnvelopeHeader(nil, 7), 0x05, 'a'),
	}
	for name, msg := range cases {
		delivered := 0
		_, err := decodeEnvelope(msg, func(uint64, []byte) { delivered++ })
		if !errors.Is(err, ErrCorruptEnvelope) {
			t.Errorf("%s: err = %v, want ErrCorruptEnvelope", name, err)
		}
		if delivered != 0 {
			t.Errorf("%s: delivered %d frames of a corrupt envelope", name, delivered)
		}
	}
}

func TestMaxFrameSizeFillsPayloadExactly(t *testing.T) {
	for _, payload := range []int{256, 4096, 1 << 20, 8 << 20} {
		for _, from := range []uint64{1, 300, 1 << 62} {
			size := MaxFrameSize(payload, from)
			msg := appendFrame(appendEnvelopeHeader(nil, from), make([]byte, size))
			if len(msg) > payload {
				t.Fatalf("payload %d from %d: max frame %d makes a %d-byte message", payload, from, size, len(msg))
			}
			if payload-len(msg) > 1 {
				t.Fatalf("payload %d from %d: max frame %d wastes %d bytes", payload, from, size, payload-len(msg))
			}
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendFrame(appendFrame(appendEnvelopeHeader(nil, 3), []byte("hello")), nil))
	f.Add([]byte{EnvelopeVersion, 1, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		total := 0
		n, err := decodeEnvelope(msg, func(from uint64, frame []byte) {
			if from == 0 {
				t.Fatal("delivered a frame from sender 0")
			}
			total += len(frame)
		})
		if err != nil {
			if n != 0 || total != 0 {
				t.Fatal("delivered frames from a rejected envelope")
			}
			return
		}
		if n == 0 || total > len(msg) {
			t.Fatalf("accepted %d frames totalling %d bytes from %d bytes", n, total, len(msg))
		}
		// Re-encoding what was decoded gives back the same bytes.
		from, _, _ := readEnvelopeHeader(msg)
		re := appendEnvelopeHeader(nil, from)
		decodeEnvelope(msg, func(_ uint64, frame []byte) { re = appendFrame(re, frame) })
		if !bytes.Equal(re, msg) && countFrames(re) != n {
			t.Fatalf("re-encoding lost frames")
		}
	})
}
