package transport

import (
	"testing"

	"github.com/nats-io/nats.go"
)

type natsMsg = nats.Msg

// BenchmarkSend measures Send through a real embedded server to a receiving
// transport, 256-byte frames. The baseline publishes each frame as its own
// NATS message with no envelope.
func BenchmarkSend(b *testing.B) {
	srv, err := StartEmbedded(EmbeddedConfig{ClientListen: "127.0.0.1:-1"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	ncSend, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer ncSend.Close()
	ncRecv, err := Connect(ConnectConfig{URLs: []string{srv.ClientURL()}})
	if err != nil {
		b.Fatal(err)
	}
	defer ncRecv.Close()
	frame := make([]byte, 256)

	b.Run("transport", func(b *testing.B) {
		sender, err := New(ncSend, Config{NodeID: 1, MaxQueueBytes: 256 << 20})
		if err != nil {
			b.Fatal(err)
		}
		receiver, err := New(ncRecv, Config{NodeID: 2})
		if err != nil {
			b.Fatal(err)
		}
		received := make(chan struct{}, 1)
		var count int
		target := 0
		receiver.SetHandler(func(uint64, []byte) {
			count++
			if count == target {
				received <- struct{}{}
			}
		})
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		target = b.N
		for b.Loop() {
			if err := sender.Send(2, frame); err != nil {
				b.Fatal(err)
			}
		}
		<-received
		b.StopTimer()
		st := sender.Stats()
		b.ReportMetric(float64(st.FramesSent)/float64(max(st.MessagesSent, 1)), "frames/msg")
		sender.Close()
		receiver.Close()
	})
	b.Run("baseline/publish-per-frame", func(b *testing.B) {
		received := make(chan struct{}, 1)
		var count int
		target := b.N
		sub, err := ncRecv.Subscribe("bench.baseline", func(*natsMsg) {
			count++
			if count == target {
				received <- struct{}{}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		sub.SetPendingLimits(-1, -1)
		ncRecv.Flush()
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if err := ncSend.Publish("bench.baseline", frame); err != nil {
				b.Fatal(err)
			}
		}
		<-received
	})
}
