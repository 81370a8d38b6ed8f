package snapshot

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSendWindowRewindsForAReceiverThatStartedOverNearTheEnd: a receiver
// recreated when fewer than repeatsToResend+1 chunks remain after the
// acknowledged offset asks for offset 0 with every chunk it gets; the
// window's next Timeout resends from there, and the transfer completes.
// Before, each Timeout resent only those few chunks from the stale
// acknowledged offset and reset the repeat count, so the window never went
// back to 0 and the transfer never completed (the raft driver gave up
// after two election timeouts and started it all again). Found in review.
func TestSendWindowRewindsForAReceiverThatStartedOverNearTheEnd(t *testing.T) {
	meta, body := testMeta(9), testBody(9, 40_000)
	srcFS := vfs.NewMem()
	src := mustOpenStore(t, srcFS)
	writeSnapshot(t, src, meta, body)
	dst := mustOpenStore(t, vfs.NewMem())

	sender, err := src.NewSender(meta.Index, ChunkHeaderSize+1024)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	chunks := (sender.Size() + uint64(sender.MaxChunkLen()) - 1) / uint64(sender.MaxChunkLen())
	if chunks < 10 {
		t.Fatalf("only %d chunks", chunks)
	}
	w := NewSendWindow(sender.Size(), sender.MaxChunkLen(), 8)
	recv, err := dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(offset uint64) Ack {
		msg, err := sender.AppendChunk(nil, offset)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeChunk(msg)
		if err != nil {
			t.Fatal(err)
		}
		ack, _ := recv.Receive(c)
		return ack
	}
	// Lossless transfer until two chunks are left to send; the last two
	// chunks are lost and the receiver is recreated (follower restart, or
	// the driver replacing its inbound transfer).
	stopAt := (chunks - 2) * uint64(sender.MaxChunkLen())
	for !w.Done() {
		var acks []Ack
		sent := false
		for offset, ok := w.Next(); ok; offset, ok = w.Next() {
			sent = true
			if offset >= stopAt {
				continue // lost
			}
			acks = append(acks, deliver(offset))
		}
		for _, a := range acks {
			w.Ack(a)
		}
		if !sent || len(acks) == 0 {
			break
		}
	}
	if w.Acked() != stopAt {
		t.Fatalf("acked %d, want %d", w.Acked(), stopAt)
	}
	_ = recv.Abandon()
	recv, err = dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		t.Fatal(err)
	}
	// From now on the network is perfect; the owner calls Timeout when no
	// progress is made (as raft's sendSnapshot does every ElectionTimeout/2).
	rewound := false
	for round := 0; round < 200 && !w.Done(); round++ {
		w.Timeout()
		var acks []Ack
		for offset, ok := w.Next(); ok; offset, ok = w.Next() {
			if offset == 0 {
				rewound = true
			}
			acks = append(acks, deliver(offset))
		}
		for _, a := range acks {
			w.Ack(a)
		}
	}
	if !w.Done() {
		t.Fatalf("after 200 timeouts over a lossless network the transfer is not done: window acked=%d (rewound to 0: %v), receiver wants %d of %d",
			w.Acked(), rewound, recv.Next(), sender.Size())
	}
}
