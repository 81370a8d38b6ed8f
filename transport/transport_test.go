package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 20 * time.Second

func startServer(t *testing.T, cfg EmbeddedConfig) *EmbeddedServer {
	t.Helper()
	if cfg.ClientListen == "" {
		cfg.ClientListen = "127.0.0.1:-1"
	}
	srv, err := StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// startCluster starts n embedded servers routed into one NATS cluster.
func startCluster(t *testing.T, n int, maxPayload int32) []*EmbeddedServer {
	t.Helper()
	seed := startServer(t, EmbeddedConfig{ServerName: "s1", ClusterListen: "127.0.0.1:-1", MaxPayload: maxPayload})
	servers := []*EmbeddedServer{seed}
	for i := 2; i <= n; i++ {
		servers = append(servers, startServer(t, EmbeddedConfig{
			ServerName: fmt.Sprintf("s%d", i), ClusterListen: "127.0.0.1:-1",
			Routes: []string{seed.ClusterURL()}, MaxPayload: maxPayload,
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.WaitForRoutes(ctx, n-1); err != nil {
			t.Fatalf("server %s: %v", s.Name(), err)
		}
	}
	return servers
}

func connect(t *testing.T, srv *EmbeddedServer, name string) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// inbox collects the frames a transport's handler receives.
type inbox struct {
	mu     sync.Mutex
	frames []received
	signal chan struct{}
}

type received struct {
	from  uint64
	frame []byte
}

func newInbox() *inbox { return &inbox{signal: make(chan struct{}, 1)} }

func (in *inbox) handle(from uint64, frame []byte) {
	in.mu.Lock()
	in.frames = append(in.frames, received{from, frame})
	in.mu.Unlock()
	select {
	case in.signal <- struct{}{}:
	default:
	}
}

func (in *inbox) snapshot() []received {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]received(nil), in.frames...)
}

// waitFor waits until the inbox satisfies cond or the test timeout passes.
func (in *inbox) waitFor(t *testing.T, what string, cond func([]received) bool) []received {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		got := in.snapshot()
		if cond(got) {
			return got
		}
		select {
		case <-in.signal:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; have %d frames", what, len(got))
		}
	}
}

func newTransport(t *testing.T, nc *nats.Conn, cfg Config) (*Transport, *inbox) {
	t.Helper()
	tr, err := New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	in := newInbox()
	tr.SetHandler(in.handle)
	return tr, in
}

// warmUp sends probe frames from → to until one arrives, so that
// subscription interest has spread over the routes before a test counts
// frames. Probes start with 0xFF; tests' frames never do.
// warmUp sends probes until one arrives, and returns how many it sent.
func warmUp(t *testing.T, from *Transport, to uint64, in *inbox) (probes int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		if err := from.Send(to, []byte{0xFF, 'p', 'r', 'o', 'b', 'e'}); err != nil {
			t.Fatal(err)
		}
		probes++
		select {
		case <-in.signal:
		case <-time.After(20 * time.Millisecond):
		}
		for _, r := range in.snapshot() {
			if r.from == from.NodeID() {
				return probes
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d never reached node %d", from.NodeID(), to)
		}
	}
}

// withoutProbes drops warm-up probes.
func withoutProbes(frames []received) []received {
	var out []received
	for _, r := range frames {
		if len(r.frame) > 0 && r.frame[0] == 0xFF {
			continue
		}
		out = append(out, r)
	}
	return out
}

func frameFor(from, to uint64, seq int) []byte {
	return fmt.Appendf(nil, "%d->%d #%d", from, to, seq)
}

func TestTransportsExchangeFramesAcrossRoutedServers(t *testing.T) {
	servers := startCluster(t, 3, 0)
	transports := make([]*Transport, 3)
	inboxes := make([]*inbox, 3)
	for i := range 3 {
		id := uint64(i + 1)
		transports[i], inboxes[i] = newTransport(t, connect(t, servers[i], fmt.Sprintf("node-%d", id)), Config{NodeID: id})
	}
	for i, from := range transports {
		for j := range transports {
			if i != j {
				warmUp(t, from, uint64(j+1), inboxes[j])
			}
		}
	}
	const perPair = 200
	for seq := range perPair {
		for _, from := range transports {
			for to := uint64(1); to <= 3; to++ {
				if to != from.NodeID() {
					if err := from.Send(to, frameFor(from.NodeID(), to, seq)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	for j, in := range inboxes {
		to := uint64(j + 1)
		got := in.waitFor(t, "all frames", func(r []received) bool { return len(withoutProbes(r)) == 2*perPair })
		next := map[uint64]int{}
		for _, r := range withoutProbes(got) {
			want := frameFor(r.from, to, next[r.from])
			if !bytes.Equal(r.frame, want) {
				t.Fatalf("node %d got %q from %d, want %q (order per sender)", to, r.frame, r.from, want)
			}
			next[r.from]++
		}
	}
}

func TestSendCoalescesFramesPerDestination(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "coalesce")
	sender, _ := newTransport(t, nc, Config{NodeID: 1, FlushInterval: 50 * time.Millisecond})
	receiver, in := newTransport(t, nc, Config{NodeID: 2})
	_ = receiver
	probes := warmUp(t, sender, 2, in)
	// Probes still queued when warmUp returned would be counted below.
	in.waitFor(t, "every probe", func(r []received) bool { return len(r) == probes })
	// The sender counts a message after its publish returns, which can be
	// after the receiver has it: wait for the counts too.
	statsReach := func(what string, framesSent uint64) Stats {
		t.Helper()
		deadline := time.Now().Add(testTimeout)
		for {
			st := sender.Stats()
			if st.FramesSent >= framesSent {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats count %d frames sent, waiting for %s (%d)", st.FramesSent, what, framesSent)
			}
			time.Sleep(time.Millisecond)
		}
	}
	before := statsReach("the probes", uint64(probes))
	const frames = 1000
	for seq := range frames {
		if err := sender.Send(2, frameFor(1, 2, seq)); err != nil {
			t.Fatal(err)
		}
	}
	in.waitFor(t, "all frames", func(r []received) bool { return len(withoutProbes(r)) == frames })
	after := statsReach("every frame", before.FramesSent+frames)
	messages := after.MessagesSent - before.MessagesSent
	if sent := after.FramesSent - before.FramesSent; sent != frames {
		t.Fatalf("stats count %d frames sent, want %d", sent, frames)
	}
	if messages == 0 || messages > frames/10 {
		t.Fatalf("%d frames went out in %d NATS messages; want coalescing to at most %d", frames, messages, frames/10)
	}
	t.Logf("%d frames in %d messages", frames, messages)
}

func TestMaxPayloadRespected(t *testing.T) {
	const maxPayload = 4096
	servers := startCluster(t, 2, maxPayload)
	ncSender := connect(t, servers[0], "sender")
	ncReceiver := connect(t, servers[1], "receiver")
	if ncSender.MaxPayload() != maxPayload {
		t.Fatalf("server max payload %d, want %d", ncSender.MaxPayload(), maxPayload)
	}
	// A spy on the receiver's server sees every peer message as delivered.
	spy := connect(t, servers[1], "spy")
	var spyMu sync.Mutex
	largest, spied, spiedBytes := 0, 0, 0
	if _, err := spy.Subscribe("raftmq.peer.>", func(m *nats.Msg) {
		spyMu.Lock()
		largest = max(largest, len(m.Data)+len(m.Header))
		spied++
		spiedBytes += len(m.Data)
		spyMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	sender, _ := newTransport(t, ncSender, Config{NodeID: 1, FlushInterval: 5 * time.Millisecond})
	_, in := newTransport(t, ncReceiver, Config{NodeID: 2})
	warmUp(t, sender, 2, in)

	maxFrame := sender.MaxFrameSize()
	rng := rand.New(rand.NewPCG(1, 2))
	var want [][]byte
	wantBytes := 0
	for i := range 300 {
		var size int
		switch i % 3 {
		case 0:
			size = maxFrame
		case 1:
			size = maxFrame - rng.IntN(64)
		default:
			size = 1 + rng.IntN(maxFrame)
		}
		frame := make([]byte, size)
		frame[0] = byte(i) & 0x7F
		for k := 1; k < size; k++ {
			frame[k] = byte(rng.Uint32())
		}
		want = append(want, frame)
		wantBytes += size
		if err := sender.Send(2, frame); err != nil {
			t.Fatalf("frame %d (%d bytes, limit %d): %v", i, size, maxFrame, err)
		}
	}
	got := in.waitFor(t, "all frames", func(r []received) bool { return len(withoutProbes(r)) == len(want) })
	for i, r := range withoutProbes(got) {
		if !bytes.Equal(r.frame, want[i]) {
			t.Fatalf("frame %d: %d bytes differ from the %d sent", i, len(r.frame), len(want[i]))
		}
	}
	// The spy's subscription is delivered independently of the receiver's:
	// wait until it has seen at least the frames' bytes before judging sizes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		spyMu.Lock()
		seen := spiedBytes
		spyMu.Unlock()
		if seen >= wantBytes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spy saw %d of at least %d bytes", seen, wantBytes)
		}
		time.Sleep(5 * time.Millisecond)
	}
	spyMu.Lock()
	defer spyMu.Unlock()
	if largest > maxPayload {
		t.Fatalf("a %d-byte message exceeded the %d-byte max payload", largest, maxPayload)
	}
	if largest < maxPayload-64 {
		t.Fatalf("largest message %d bytes: frames were not packed near the %d-byte limit", largest, maxPayload)
	}
	if st := sender.Stats(); st.PublishErrors != 0 || st.FramesDropped != 0 {
		t.Fatalf("sender stats show losses: %+v", st)
	}
}

func TestOversizeFrameRejected(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{MaxPayload: 2048})
	tr, _ := newTransport(t, connect(t, srv, "oversize"), Config{NodeID: 1})
	err := tr.Send(2, make([]byte, tr.MaxFrameSize()+1))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprint(tr.MaxFrameSize())) || !strings.Contains(err.Error(), "2048") {
		t.Fatalf("error %q does not name the limit", err)
	}
	if err := tr.Send(2, make([]byte, tr.MaxFrameSize())); err != nil {
		t.Fatalf("frame at the limit rejected: %v", err)
	}
	if dropped := tr.Stats().FramesDropped; dropped != 1 {
		t.Fatalf("FramesDropped %d after one frame too large, want 1", dropped)
	}
	if _, err := New(connect(t, srv, "too-big"), Config{NodeID: 3, MaxPayload: 4096}); err == nil {
		t.Fatal("MaxPayload above the server's accepted")
	}
}

func TestClusterNamesIsolateTraffic(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "shared")
	a1, _ := newTransport(t, nc, Config{NodeID: 1, ClusterName: "alpha"})
	_, a2in := newTransport(t, nc, Config{NodeID: 2, ClusterName: "alpha"})
	b1, _ := newTransport(t, nc, Config{NodeID: 1, ClusterName: "beta"})
	_, b2in := newTransport(t, nc, Config{NodeID: 2, ClusterName: "beta"})
	for i := range 50 {
		if err := a1.Send(2, []byte(fmt.Sprintf("alpha %d", i))); err != nil {
			t.Fatal(err)
		}
		if err := b1.Send(2, []byte(fmt.Sprintf("beta %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	checkOnly := func(in *inbox, prefix string) {
		got := in.waitFor(t, prefix+" frames", func(r []received) bool { return len(r) >= 50 })
		// A round trip through the server after both queues flushed: anything
		// misrouted would have arrived by now.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		got = in.snapshot()
		if len(got) != 50 {
			t.Fatalf("%s receiver got %d frames, want 50", prefix, len(got))
		}
		for _, r := range got {
			if !strings.HasPrefix(string(r.frame), prefix) {
				t.Fatalf("%s receiver got foreign frame %q", prefix, r.frame)
			}
		}
	}
	checkOnly(a2in, "alpha")
	checkOnly(b2in, "beta")
}

func TestQueueOverflowDropsAndCounts(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "overflow")
	reg := prometheus.NewRegistry()
	// A long linger holds frames in the queue until Close.
	sender, err := New(nc, Config{NodeID: 1, FlushInterval: time.Hour, MaxQueueBytes: 1000, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, in := newTransport(t, nc, Config{NodeID: 2})
	frame := make([]byte, 99) // 100 bytes queued each
	accepted, dropped := 0, 0
	for range 20 {
		switch err := sender.Send(2, frame); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			dropped++
		default:
			t.Fatal(err)
		}
	}
	if accepted != 10 || dropped != 10 {
		t.Fatalf("accepted %d dropped %d, want 10 and 10", accepted, dropped)
	}
	if got := counterValue(t, reg, "raftmq_transport_frames_dropped_total"); got != 10 {
		t.Fatalf("dropped metric %v, want 10", got)
	}
	if err := sender.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sender.Send(2, frame); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	in.waitFor(t, "queued frames flushed by Close", func(r []received) bool { return len(r) == accepted })
	if families, err := reg.Gather(); err != nil || len(families) != 0 {
		t.Fatalf("metrics still registered after Close: %d, %v", len(families), err)
	}
}

// counterValue reads a registered counter by name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestFramesWithoutHandlerAreDroppedAndCounted(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "nohandler")
	sender, _ := newTransport(t, nc, Config{NodeID: 1})
	receiver, err := New(nc, Config{NodeID: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer receiver.Close()
	if err := sender.Send(2, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testTimeout)
	for receiver.Stats().FramesDropped != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("frame never counted as dropped: %+v", receiver.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{},
		{NodeID: 1, ClusterName: "a b"},
		{NodeID: 1, ClusterName: "a.*"},
		{NodeID: 1, ClusterName: "a..b"},
		{NodeID: 1, MaxPayload: 10},
		{NodeID: 1, FlushInterval: -1},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{NodeID: 1, ClusterName: "prod.eu"}).Validate(); err != nil {
		t.Errorf("valid config rejected: %v", err)
	}
	if (EmbeddedConfig{Routes: []string{"nats://x:1"}}).Validate() == nil {
		t.Error("routes without cluster listen accepted")
	}
	if (EmbeddedConfig{ClientListen: "nohost"}).Validate() == nil {
		t.Error("bad listen address accepted")
	}
	if (ConnectConfig{TLSCertFile: "c.pem"}).Validate() == nil {
		t.Error("cert without key accepted")
	}
}

func TestConnectErrorRedactsPassword(t *testing.T) {
	_, err := Connect(ConnectConfig{URLs: []string{"nats://user:secret@127.0.0.1:1"}, ConnectTimeout: time.Second})
	if err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestInProcessConnection(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc, err := Connect(ConnectConfig{InProcess: srv, Name: "in-process"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tcp := connect(t, srv, "tcp")
	sender, _ := newTransport(t, nc, Config{NodeID: 1})
	_, in := newTransport(t, tcp, Config{NodeID: 2})
	if err := sender.Send(2, []byte("over the pipe")); err != nil {
		t.Fatal(err)
	}
	got := in.waitFor(t, "frame", func(r []received) bool { return len(r) == 1 })
	if got[0].from != 1 || string(got[0].frame) != "over the pipe" {
		t.Fatalf("got %+v", got[0])
	}
}

func TestCoalesceBytesCapsMessagesButNotFrames(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "coalesce-bytes")
	var mu sync.Mutex
	var sizes []int
	spy, err := nc.Subscribe("raftmq.peer.2", func(m *nats.Msg) {
		mu.Lock()
		sizes = append(sizes, len(m.Data))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Unsubscribe()
	sender, _ := newTransport(t, nc, Config{NodeID: 1, CoalesceBytes: 1000, FlushInterval: 20 * time.Millisecond})
	_, in := newTransport(t, nc, Config{NodeID: 2})
	for range 50 {
		if err := sender.Send(2, make([]byte, 99)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.Send(2, make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	in.waitFor(t, "all frames", func(r []received) bool { return len(r) == 51 })
	// The spy is a subscription of its own: its callbacks may trail the
	// transport's, so wait until it has seen every frame's bytes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		total := 0
		for _, size := range sizes {
			total += size
		}
		mu.Unlock()
		if total >= 50*99+5000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spy saw %d bytes of messages, want at least %d", total, 50*99+5000)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	large := 0
	for _, size := range sizes {
		if size > 1000 {
			large++
			if size > 5000+8 {
				t.Fatalf("the large frame's message is %d bytes: small frames were added to it", size)
			}
		}
	}
	if large != 1 || len(sizes) < 6 || len(sizes) > 10 {
		t.Fatalf("message sizes %v: want ~5 coalesced messages of at most 1000 bytes and one large", sizes)
	}
}

// TestSendAppendEncodesInPlace: frames written by SendAppend arrive like
// Send's, in order with them, and an encoder that writes another size than
// announced gets an error without disturbing the frames around it.
func TestSendAppendEncodesInPlace(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "send-append")
	sender, _ := newTransport(t, nc, Config{NodeID: 1, FlushInterval: 20 * time.Millisecond})
	_, in := newTransport(t, nc, Config{NodeID: 2})
	warmUp(t, sender, 2, in)
	big := bytes.Repeat([]byte("x"), 200<<10) // larger than the coalesce size
	want := [][]byte{[]byte("plain"), []byte("appended"), big, []byte("after")}
	if err := sender.Send(2, want[0]); err != nil {
		t.Fatal(err)
	}
	for _, frame := range want[1:3] {
		if err := sender.SendAppend(2, len(frame), func(dst []byte) []byte { return append(dst, frame...) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.SendAppend(2, 3, func(dst []byte) []byte { return append(dst, "four"...) }); err == nil {
		t.Fatal("SendAppend accepted an encoder that wrote 4 bytes for 3")
	}
	if err := sender.Send(2, want[3]); err != nil {
		t.Fatal(err)
	}
	got := in.waitFor(t, "4 frames", func(r []received) bool { return len(withoutProbes(r)) >= 4 })
	got = withoutProbes(got)
	if len(got) != 4 {
		t.Fatalf("got %d frames, want 4", len(got))
	}
	for i, r := range got {
		if r.from != 1 || !bytes.Equal(r.frame, want[i]) {
			t.Fatalf("frame %d: from %d, %d bytes %.20q; want %d bytes %.20q", i, r.from, len(r.frame), r.frame, len(want[i]), want[i])
		}
	}
}

// TestConcurrentSendersKeepOrderAndCloseDrains: without a linger, senders
// publish themselves when nobody else is; frames from each goroutine still
// arrive in order, none is lost, and Close publishes everything queued.
func TestConcurrentSendersKeepOrderAndCloseDrains(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "concurrent-senders")
	sender, err := New(nc, Config{NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, in := newTransport(t, nc, Config{NodeID: 2})
	probe, _ := newTransport(t, nc, Config{NodeID: 3})
	warmUp(t, probe, 2, in)
	const goroutines, frames = 4, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range frames {
				frame := fmt.Appendf(nil, "%d/%d", g, i)
				if err := sender.Send(2, frame); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := sender.Close(); err != nil {
		t.Fatal(err)
	}
	got := in.waitFor(t, "every frame", func(r []received) bool { return len(withoutProbes(r)) >= goroutines*frames })
	next := make([]int, goroutines)
	for _, r := range withoutProbes(got) {
		var g, i int
		if _, err := fmt.Sscanf(string(r.frame), "%d/%d", &g, &i); err != nil || r.from != 1 {
			t.Fatalf("unexpected frame %q from %d", r.frame, r.from)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: frame %d arrived when %d was due", g, i, next[g])
		}
		next[g]++
	}
	for g, n := range next {
		if n != frames {
			t.Fatalf("goroutine %d: %d of %d frames arrived", g, n, frames)
		}
	}
}

// TestSlowConsumerDropsAreCounted: peer messages the NATS client drops
// because the handler fell behind show up in Stats.SlowConsumerDrops.
func TestSlowConsumerDropsAreCounted(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	nc := connect(t, srv, "slow-consumer")
	receiver, err := New(nc, Config{NodeID: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer receiver.Close()
	handling, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	receiver.SetHandler(func(uint64, []byte) {
		select {
		case handling <- struct{}{}:
		default:
		}
		<-release
	})
	if err := receiver.sub.SetPendingLimits(2, -1); err != nil { // far below the real limits
		t.Fatal(err)
	}
	publisher := connect(t, srv, "slow-consumer-publisher")
	publish := func(n int) {
		t.Helper()
		for range n {
			envelope := appendFrame(appendEnvelopeHeader(nil, 1), []byte("frame"))
			if err := publisher.Publish(PeerSubject("", 2), envelope); err != nil {
				t.Fatal(err)
			}
		}
		if err := publisher.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	select {
	case <-handling:
	case <-time.After(testTimeout):
		t.Fatal("the handler never got the first message")
	}
	publish(9)
	deadline := time.Now().Add(testTimeout)
	for {
		pending, _, err := receiver.sub.Pending()
		if err != nil {
			t.Fatal(err)
		}
		// NATS counts the message in the handler as pending.
		want := uint64(10 - pending)
		if got := receiver.Stats().SlowConsumerDrops; pending > 0 && got == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("SlowConsumerDrops %d, want %d (%d pending)", got, want, pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEmbeddedServerOnATakenPortFailsAtOnce: a client port another process
// holds fails the start at once with the listener's error; before, the
// server logged it only to its logger and the start waited out the whole
// ready timeout (10 s by default) to report "not ready".
func TestEmbeddedServerOnATakenPortFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	start := time.Now()
	srv, err := StartEmbedded(EmbeddedConfig{ClientListen: taken.Addr().String(), ReadyTimeout: 20 * time.Second})
	if err == nil {
		srv.Shutdown()
		t.Fatalf("started on %s, which another listener holds", taken.Addr())
	}
	if took := time.Since(start); took > 5*time.Second || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("after %v: %v; want the listener's error at once", took.Round(time.Millisecond), err)
	}
}
