package transport

import (
	"bytes"
	"errors"
	"testing"
)

// peer is the shape Transport and MemTransport share; the broker can
// depend on it instead of a concrete type.
type peer interface {
	Send(to uint64, frame []byte) error
	SetHandler(Handler)
	Close() error
}

var (
	_ peer = (*Transport)(nil)
	_ peer = (*MemTransport)(nil)
)

func TestMemNetworkDeliversInOrderAndCopies(t *testing.T) {
	network := NewMemNetwork()
	a, b := network.Join(1), network.Join(2)
	defer a.Close()
	defer b.Close()
	in := newInbox()
	b.SetHandler(in.handle)
	buf := []byte("x")
	for i := range 100 {
		buf[0] = byte(i)
		if err := a.Send(2, buf); err != nil {
			t.Fatal(err)
		}
	}
	got := in.waitFor(t, "100 frames", func(r []received) bool { return len(r) == 100 })
	for i, r := range got {
		if r.from != 1 || !bytes.Equal(r.frame, []byte{byte(i)}) {
			t.Fatalf("frame %d: from %d %v", i, r.from, r.frame)
		}
	}
}

func TestMemNetworkCutLinkDrops(t *testing.T) {
	network := NewMemNetwork()
	a, b := network.Join(1), network.Join(2)
	defer a.Close()
	defer b.Close()
	inA, inB := newInbox(), newInbox()
	a.SetHandler(inA.handle)
	b.SetHandler(inB.handle)
	network.SetLink(1, 2, false)
	if err := a.Send(2, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(1, []byte("reverse")); err != nil {
		t.Fatal(err)
	}
	inA.waitFor(t, "reverse frame", func(r []received) bool { return len(r) == 1 })
	network.SetLink(1, 2, true)
	if err := a.Send(2, []byte("after")); err != nil {
		t.Fatal(err)
	}
	got := inB.waitFor(t, "frame after heal", func(r []received) bool { return len(r) >= 1 })
	if len(got) != 1 || string(got[0].frame) != "after" {
		t.Fatalf("got %v, want only the frame sent after the link healed", got)
	}
	network.Isolate(2, true)
	if err := a.Send(2, []byte("isolated")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(1, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if len(inB.snapshot()) != 1 {
		t.Fatal("isolated node received a frame")
	}
}
