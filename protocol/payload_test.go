package protocol

import (
	"bytes"
	"strings"
	"testing"
)

func TestEncodePayloadCompressesOnlyLargeMessages(t *testing.T) {
	small := []byte(strings.Repeat(`{"topic":"orders","partition":1},`, 100))
	if out, encoding := EncodePayload(small, 1<<20); encoding != "" || !bytes.Equal(out, small) {
		t.Fatalf("a %d-byte payload was encoded %q", len(small), encoding)
	}
	// Over the max payload it is compressed, however small.
	out, encoding := EncodePayload(small, 1<<10)
	if encoding != EncodingZstd || len(out) >= len(small) {
		t.Fatalf("over the max payload: encoding %q, %d bytes of %d", encoding, len(out), len(small))
	}
	large := []byte(strings.Repeat(`{"topic":"orders","partition":1,"role":"follower"},`, 4000))
	out, encoding = EncodePayload(large, 1<<20)
	if encoding != EncodingZstd || len(out) >= len(large)/4 {
		t.Fatalf("large payload: encoding %q, %d bytes of %d", encoding, len(out), len(large))
	}
	plain, err := DecodePayload(out, encoding)
	if err != nil || !bytes.Equal(plain, large) {
		t.Fatalf("decoded %d bytes (%v), want the %d encoded", len(plain), err, len(large))
	}
	// Incompressible data is sent as it is.
	random := make([]byte, CompressAbove+1)
	state := uint32(1)
	for i := range random {
		state = state*1664525 + 1013904223
		random[i] = byte(state >> 24)
	}
	if _, encoding := EncodePayload(random, 1<<20); encoding != "" {
		t.Fatalf("random bytes encoded %q", encoding)
	}
}

func TestDecodePayloadRefusesWhatItCannotTrust(t *testing.T) {
	if plain, err := DecodePayload([]byte("as is"), ""); err != nil || string(plain) != "as is" {
		t.Fatalf("plain payload: %q, %v", plain, err)
	}
	if _, err := DecodePayload([]byte("x"), "gzip"); err == nil || !strings.Contains(err.Error(), `unknown payload encoding "gzip"`) {
		t.Fatalf("unknown encoding: %v", err)
	}
	if _, err := DecodePayload([]byte("not zstd"), EncodingZstd); err == nil {
		t.Fatal("garbage decoded as zstd")
	}
	// A small message that would decode past MaxDecodedPayload.
	bomb := zstdEncoder().EncodeAll(make([]byte, MaxDecodedPayload+1), nil)
	if len(bomb) > 1<<20 {
		t.Fatalf("the test's bomb is %d bytes", len(bomb))
	}
	if _, err := DecodePayload(bomb, EncodingZstd); err == nil {
		t.Fatalf("a %d-byte payload decoded to over %d bytes", len(bomb), MaxDecodedPayload)
	}
}
