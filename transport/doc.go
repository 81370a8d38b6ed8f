// Package transport carries Raft traffic between brokers over NATS, runs the
// embedded NATS server, and connects to an external NATS system. It moves
// opaque frames (encoded protocol.RaftMessage values) and knows nothing of
// Raft.
//
// # Usage
//
//	srv, _ := transport.StartEmbedded(transport.EmbeddedConfig{
//		ClientListen:  "127.0.0.1:4222",
//		ClusterListen: "127.0.0.1:6222",
//		Routes:        []string{"nats://10.0.0.2:6222"},
//	})
//	defer srv.Shutdown()
//	nc, _ := transport.Connect(transport.ConnectConfig{URLs: []string{srv.ClientURL()}, Name: "broker-1"})
//	defer nc.Close()
//	tr, _ := transport.New(nc, transport.Config{NodeID: 1, Registerer: registry})
//	defer tr.Close()
//	tr.SetHandler(func(from uint64, frame []byte) { host.Step(decode(frame)) })
//	err := tr.Send(2, frame) // queued or handed to the NATS client; never waits for the network
//
// Instead of StartEmbedded, Connect takes the URLs, credentials file,
// user/password, token and TLS files of an existing NATS system.
//
// A process connects to its own embedded server with
// ConnectConfig{InProcess: srv}: an in-memory pipe instead of TCP loopback,
// so a frame between two brokers crosses one socket (the route between
// their servers) instead of three, with no syscalls between a broker and
// its server. BenchmarkRoundTrip measures one frame's round trip both ways
// (about half the time and CPU over the pipe). Clients keep using TCP.
//
// Every embedded server defines the account PeerAccount beside the global
// one clients use. Its only user, PeerUser, connects in-process only, with
// a password the server makes at start, so
// ConnectConfig{InProcess: srv, PeerAccount: true} is the one way in: a
// broker runs its Transport on such a connection, and no client of the
// server sees or reaches the peer subjects (docs/adr/0005). Routed servers
// carry the account between them. A connection over TCP, to an embedded
// server or an external NATS system, keeps its peer traffic in the account
// its credentials give it.
//
// # Subjects and wire format
//
// Node N receives on "<cluster>.peer.<N>" (PeerSubject); the cluster name
// (default "raftmq") keeps clusters that share a NATS system apart. Each NATS
// message is an envelope of one or more frames from one sender:
//
//	version   1 byte   EnvelopeVersion (1); other values are rejected
//	sender    uvarint  node id of the sender, non-zero
//	frames    repeated until the end of the message:
//	  length  uvarint  frame length in bytes
//	  frame   length bytes
//
// A message never exceeds the max payload (Config.MaxPayload, by default the
// connection's); MaxFrameSize is the largest single frame that fits, and Send
// rejects larger ones with ErrFrameTooLarge naming the limit (counted in
// Stats.FramesDropped). Callers split large AppendEntries and snapshot
// chunks below that size. A message that fails to decode is dropped whole
// and counted; no frame of it is delivered.
//
// # Contract and concurrency
//
// Send may be called from any goroutine. It copies the frame into the
// destination's queue; one goroutine at a time publishes the queues,
// coalescing the frames queued for a destination into messages of up to
// Config.CoalesceBytes (default 64 KiB; a larger frame travels alone, up to
// the max payload). Without a linger (Config.FlushInterval, default 0) a
// Send that finds nobody publishing publishes itself (into the NATS
// client's buffer: no goroutine hand-off on the Raft round trip), and
// frames sent meanwhile go out with its next round; with a linger a
// flusher goroutine publishes after it. SendAppend encodes a frame straight
// into the outgoing message. Frames to one destination arrive in the order
// they were sent. Memory is bounded per destination (Config.MaxQueueBytes);
// beyond it Send drops the frame and returns ErrQueueFull. Delivery is best
// effort, as Raft expects: frames are lost when a queue overflows, while the
// NATS connection is down beyond its reconnect buffer, or when the receiver
// is slow; nothing is durable.
//
// The handler runs on the NATS subscription's goroutine, one frame at a time;
// it owns the frame it is given and must not block for long.
//
// Metrics (Config.Registerer; every series has the label node): messages,
// frames and bytes sent and received, frames dropped, publish and decode
// errors, under raftmq_transport_*. Stats returns the same counters.
//
// MemNetwork and MemTransport provide the same Send / SetHandler / Close shape
// in memory for tests, with links that can be cut.
//
// # Embedded server
//
// StartEmbedded runs a nats-server in-process with JetStream off, a client
// listener (default 127.0.0.1:4222; port 0 or -1 for any free port) and,
// optionally, a route listener and routes so that the brokers' embedded
// servers form one NATS cluster. Servers that route together must share
// EmbeddedConfig.NATSClusterName.
package transport
