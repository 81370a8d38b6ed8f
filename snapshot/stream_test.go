package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestStreamRoundTrip(t *testing.T) {
	meta, body := testMeta(30), testBody(4, 200_000)
	srcFS := vfs.NewMem()
	src := mustOpenStore(t, srcFS)
	srcInfo := writeSnapshot(t, src, meta, body)
	for _, maxMessage := range []int{ChunkHeaderSize + 1, ChunkHeaderSize + 7, 1000, 64 << 10, 8 << 20} {
		if maxMessage == ChunkHeaderSize+1 && testing.Short() {
			continue
		}
		dstFS := vfs.NewMem()
		dst := mustOpenStore(t, dstFS)
		info, err := streamAll(src, dst, meta.Index, maxMessage)
		if err != nil {
			t.Fatalf("max message %d: %v", maxMessage, err)
		}
		if err := equalMeta(info.Meta, meta); err != nil || info.Size != srcInfo.Size {
			t.Fatalf("installed %+v: %v", info, err)
		}
		if !bytes.Equal(readFile(t, dstFS, info.Path), readFile(t, srcFS, srcInfo.Path)) {
			t.Fatal("installed file differs from the source")
		}
		checkSnapshot(t, dst, meta, body)
		checkSnapshot(t, mustOpenStore(t, dstFS), meta, body)
	}
}

func TestSenderChunkSizes(t *testing.T) {
	src := mustOpenStore(t, vfs.NewMem())
	writeSnapshot(t, src, testMeta(1), testBody(1, 50_000))
	if _, err := src.NewSender(1, ChunkHeaderSize); err == nil {
		t.Fatal("a message size without room for data was accepted")
	}
	if _, err := src.NewSender(2, 1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("sender of a missing snapshot: %v", err)
	}
	sender, err := src.NewSender(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	var total uint64
	for offset := uint64(0); offset < sender.Size(); {
		msg, err := sender.AppendChunk(nil, offset)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeChunk(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg) > 1000 || c.Offset != offset || c.ID != sender.ID() || c.Total != sender.Size() {
			t.Fatalf("chunk at %d: %d bytes, %+v", offset, len(msg), c)
		}
		offset += uint64(len(c.Data))
		total += uint64(len(c.Data))
		if c.Done != (offset == sender.Size()) {
			t.Fatalf("done flag %t at %d of %d", c.Done, offset, sender.Size())
		}
	}
	if total != sender.Size() {
		t.Fatalf("chunks carry %d bytes of %d", total, sender.Size())
	}
	if _, err := sender.AppendChunk(nil, sender.Size()); err == nil {
		t.Fatal("a chunk at the end of the file")
	}
}

// TestReceiverTakesChunksInOrderOnly: duplicates and chunks after a gap are
// ignored, and the receiver keeps asking for the gap.
func TestReceiverTakesChunksInOrderOnly(t *testing.T) {
	src := mustOpenStore(t, vfs.NewMem())
	writeSnapshot(t, src, testMeta(5), testBody(5, 20_000))
	sender, err := src.NewSender(5, 500)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	chunk := func(offset uint64) Chunk {
		msg, err := sender.AppendChunk(nil, offset)
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeChunk(msg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dst := mustOpenStore(t, vfs.NewMem())
	recv, err := dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		t.Fatal(err)
	}
	step := uint64(sender.MaxChunkLen())
	for _, tc := range []struct {
		offset, wantNext uint64
	}{
		{0, step}, {0, step}, // duplicate
		{2 * step, step}, // gap: still wants step
		{step, 2 * step}, {step, 2 * step}, {2 * step, 3 * step},
	} {
		ack, err := recv.Receive(chunk(tc.offset))
		if err != nil || ack.Next != tc.wantNext || ack.Done || ack.ID != sender.ID() {
			t.Fatalf("chunk at %d: ack %+v, %v; want next %d", tc.offset, ack, err, tc.wantNext)
		}
	}
	other := chunk(3 * step)
	other.ID.Term++
	if _, err := recv.Receive(other); !errors.Is(err, ErrWrongSnapshot) {
		t.Fatalf("chunk of another snapshot: %v", err)
	}
	other = chunk(3 * step)
	other.Total++
	if _, err := recv.Receive(other); !errors.Is(err, ErrBadChunk) {
		t.Fatalf("chunk with another total: %v", err)
	}
	for next := 3 * step; !recv.Done(); {
		ack, err := recv.Receive(chunk(next))
		if err != nil {
			t.Fatal(err)
		}
		next = ack.Next
	}
	if ack, err := recv.Receive(chunk(0)); err != nil || !ack.Done || ack.Next != sender.Size() {
		t.Fatalf("chunk after the install: %+v, %v", ack, err)
	}
	checkSnapshot(t, dst, testMeta(5), testBody(5, 20_000))
}

func TestReceiverAbandon(t *testing.T) {
	src := mustOpenStore(t, vfs.NewMem())
	writeSnapshot(t, src, testMeta(5), testBody(5, 20_000))
	writeSnapshot(t, src, testMeta(9), testBody(9, 20_000))
	dstFS := vfs.NewMem()
	dst := mustOpenStore(t, dstFS)
	writeSnapshot(t, dst, testMeta(2), []byte("old state"))

	sender, err := src.NewSender(5, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	recv, err := dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := sender.AppendChunk(nil, 0)
	c, _ := DecodeChunk(msg)
	if _, err := recv.Receive(c); err != nil {
		t.Fatal(err)
	}
	if err := recv.Abandon(); err != nil {
		t.Fatal(err)
	}
	if err := recv.Abandon(); err != nil {
		t.Fatal(err)
	}
	if tmp := tempFiles(t, dstFS); len(tmp) != 0 {
		t.Fatalf("abandon left %v", tmp)
	}
	if _, err := recv.Receive(c); !errors.Is(err, ErrClosed) {
		t.Fatalf("receive after abandon: %v", err)
	}
	if got := indexesOf(dst.List()); len(got) != 1 || got[0] != 2 {
		t.Fatalf("store after abandon: %v", got)
	}
	// A new leader sends a newer snapshot.
	if _, err := streamAll(src, dst, 9, 1000); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, dst, testMeta(2), []byte("old state"))
	checkSnapshot(t, dst, testMeta(9), testBody(9, 20_000))
}

// TestReceiverRejectsDamagedSource: a source file damaged on the sender's
// disk travels with valid chunk CRCs, so the receiver must catch it with
// the file CRC, install nothing and clean up.
func TestReceiverRejectsDamagedSource(t *testing.T) {
	srcFS := vfs.NewMem()
	src := mustOpenStore(t, srcFS)
	info := writeSnapshot(t, src, testMeta(5), testBody(5, 20_000))
	good := readFile(t, srcFS, info.Path)
	for _, pos := range []int{0, 9, headerSize + 3, len(good) / 2, len(good) - 20, len(good) - 1} {
		b := append([]byte(nil), good...)
		b[pos] ^= 4
		writeFile(t, srcFS, info.Path, b)
		dstFS := vfs.NewMem()
		dst := mustOpenStore(t, dstFS)
		s := mustOpenStore(t, srcFS) // rereads the header
		if len(s.List()) == 0 {
			continue // refused at the source
		}
		_, err := streamAll(s, dst, 5, 3000)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: %v", pos, err)
		}
		if len(dst.List()) != 0 || len(tempFiles(t, dstFS)) != 0 {
			t.Fatalf("flip at %d: receiver installed or left files", pos)
		}
	}
}

func TestSenderOutlivesPrune(t *testing.T) {
	src := mustOpenStore(t, vfs.NewMem())
	body := testBody(5, 50_000)
	writeSnapshot(t, src, testMeta(5), body)
	sender, err := src.NewSender(5, 2000)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	writeSnapshot(t, src, testMeta(6), nil)
	if removed, err := src.Prune(1, 6); err != nil || len(removed) != 1 {
		t.Fatalf("prune: %v %v", removed, err)
	}
	dst := mustOpenStore(t, vfs.NewMem())
	recv, err := dst.NewReceiver(sender.ID(), sender.Size())
	if err != nil {
		t.Fatal(err)
	}
	for next := uint64(0); !recv.Done(); {
		msg, err := sender.AppendChunk(nil, next)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := DecodeChunk(msg)
		ack, err := recv.Receive(c)
		if err != nil {
			t.Fatal(err)
		}
		next = ack.Next
	}
	checkSnapshot(t, dst, testMeta(5), body)
}

// lossyNet is an in-memory channel that loses, duplicates, reorders (a
// message may overtake up to 15 others) and garbles messages, driven by a
// seeded generator.
type lossyNet struct {
	r                                 *rand.Rand
	inFlight                          [][]byte
	toReceiver                        []bool
	lost, duplicated, reordered, bent int
	restarts, chunksSent              int
}

func (n *lossyNet) send(toReceiver bool, msg []byte) {
	n.inFlight = append(n.inFlight, append([]byte(nil), msg...))
	n.toReceiver = append(n.toReceiver, toReceiver)
}

// deliver takes one message out of the network, or reports false.
func (n *lossyNet) deliver() (msg []byte, toReceiver, ok bool) {
	for len(n.inFlight) > 0 {
		i := 0
		if n.r.IntN(4) == 0 { // overtakes up to 15 messages sent before it
			i = n.r.IntN(min(len(n.inFlight), 16))
			n.reordered += min(i, 1)
		}
		msg, toReceiver = n.inFlight[i], n.toReceiver[i]
		p := n.r.IntN(100)
		switch {
		case p < 15:
			n.lost++
		case p < 25:
			n.duplicated++
			return append([]byte(nil), msg...), toReceiver, true // stays in flight
		case p < 28:
			n.bent++
			msg[n.r.IntN(len(msg))] ^= 1 << n.r.IntN(8)
		}
		n.inFlight = append(n.inFlight[:i], n.inFlight[i+1:]...)
		n.toReceiver = append(n.toReceiver[:i], n.toReceiver[i+1:]...)
		if p >= 15 {
			return msg, toReceiver, true
		}
	}
	return nil, false, false
}

// TestStreamOverLossyChannel: a Sender driven by a SendWindow converges,
// over a channel that loses, duplicates, reorders and garbles messages and
// with the receiver now and then abandoned and recreated (a follower
// restart), to a byte-identical install.
func TestStreamOverLossyChannel(t *testing.T) {
	meta, body := testMeta(77), testBody(77, 150_000)
	srcFS := vfs.NewMem()
	src := mustOpenStore(t, srcFS)
	srcInfo := writeSnapshot(t, src, meta, body)
	want := readFile(t, srcFS, srcInfo.Path)
	seeds := uint64(30)
	if testing.Short() {
		seeds = 8
	}
	var net lossyNet
	for seed := range seeds {
		net.r, net.inFlight, net.toReceiver = rand.New(rand.NewPCG(seed, 3)), nil, nil
		dstFS := vfs.NewMem()
		dst := mustOpenStore(t, dstFS)
		runLossyTransfer(t, seed, src, dst, &net, meta.Index)
		got, err := dst.Get(meta.Index)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !bytes.Equal(readFile(t, dstFS, got.Path), want) {
			t.Fatalf("seed %d: installed file differs", seed)
		}
		checkSnapshot(t, dst, meta, body)
		if tmp := tempFiles(t, dstFS); len(tmp) != 0 {
			t.Fatalf("seed %d: left %v", seed, tmp)
		}
	}
	if net.lost == 0 || net.duplicated == 0 || net.reordered == 0 || net.bent == 0 || net.restarts == 0 {
		t.Fatalf("the channel was not lossy enough: %+v", net)
	}
	t.Logf("lost %d, duplicated %d, reordered %d, garbled %d, receiver restarts %d; %d chunk messages sent for %d transfers",
		net.lost, net.duplicated, net.reordered, net.bent, net.restarts, net.chunksSent, seeds)
}

func runLossyTransfer(t *testing.T, seed uint64, src, dst *Store, net *lossyNet, index uint64) {
	sender, err := src.NewSender(index, 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	window := NewSendWindow(sender.Size(), sender.MaxChunkLen(), 8)
	sentBefore, chunks := net.chunksSent, int(sender.Size())/sender.MaxChunkLen()+1
	var recv *Receiver
	for rounds := 0; !window.Done(); rounds++ {
		if rounds > 200_000 {
			t.Fatalf("seed %d: no convergence; acked %d of %d", seed, window.Acked(), sender.Size())
		}
		for offset, ok := window.Next(); ok; offset, ok = window.Next() {
			msg, err := sender.AppendChunk(nil, offset)
			if err != nil {
				t.Fatal(err)
			}
			net.send(true, msg)
			net.chunksSent++
		}
		msg, toReceiver, ok := net.deliver()
		if !ok {
			window.Timeout()
			continue
		}
		if toReceiver {
			c, err := DecodeChunk(msg)
			if err != nil {
				continue // garbled in flight
			}
			if recv != nil && !recv.Done() && net.r.IntN(400) == 0 {
				// The follower restarts: its receiver is gone.
				if err := recv.Abandon(); err != nil {
					t.Fatal(err)
				}
				recv = nil
				net.restarts++
			}
			if recv == nil {
				if recv, err = dst.NewReceiver(c.ID, c.Total); err != nil {
					t.Fatal(err)
				}
			}
			ack, err := recv.Receive(c)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			net.send(false, AppendAck(nil, ack))
			continue
		}
		if ack, err := DecodeAck(msg); err == nil && ack.ID == sender.ID() {
			window.Ack(ack)
		}
	}
	if recv == nil || !recv.Done() {
		t.Fatalf("seed %d: sender done, receiver not", seed)
	}
	// Resends must not snowball: the channel loses about a third of the
	// round trips, and a receiver restart costs one more pass.
	if sent := net.chunksSent - sentBefore; sent > 12*chunks {
		t.Fatalf("seed %d: %d chunk messages sent for a file of %d chunks", seed, sent, chunks)
	}
}

func TestSendWindow(t *testing.T) {
	id := ID{1, 1}
	w := NewSendWindow(1000, 100, 3)
	var sent []uint64
	for offset, ok := w.Next(); ok; offset, ok = w.Next() {
		sent = append(sent, offset)
	}
	if fmt.Sprint(sent) != "[0 100 200]" {
		t.Fatalf("first window: %v", sent)
	}
	w.Ack(Ack{ID: id, Next: 100})
	if offset, ok := w.Next(); !ok || offset != 300 {
		t.Fatalf("after an ack: %d %t", offset, ok)
	}
	// Chunk 100 was lost: the receiver repeats 100 for 200 and 300.
	w.Ack(Ack{ID: id, Next: 100})
	w.Ack(Ack{ID: id, Next: 100})
	w.Ack(Ack{ID: id, Next: 100})
	if offset, ok := w.Next(); !ok || offset != 100 {
		t.Fatalf("after repeated acks: %d %t", offset, ok)
	}
	w.Timeout()
	if offset, _ := w.Next(); offset != 100 {
		t.Fatalf("after a timeout: %d", offset)
	}
	// The receiver restarted from 0 (abandoned and recreated).
	for range repeatsToResend + 1 {
		w.Ack(Ack{ID: id, Next: 0})
	}
	if offset, _ := w.Next(); offset != 0 || w.Acked() != 0 {
		t.Fatalf("after the receiver restarted: %d, acked %d", offset, w.Acked())
	}
	w.Ack(Ack{ID: id, Next: 1000, Done: true})
	if _, ok := w.Next(); ok || !w.Done() {
		t.Fatal("window open after done")
	}
}
