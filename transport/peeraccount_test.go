package transport

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// connectPeer connects to srv in-process in its peer account.
func connectPeer(t *testing.T, srv *EmbeddedServer, name string) *nats.Conn {
	t.Helper()
	nc, err := Connect(ConnectConfig{InProcess: srv, PeerAccount: true, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestPeerAccountKeepsRaftTrafficFromClients: nodes on peer-account
// connections of two routed embedded servers exchange frames, while a
// client of either server (TCP, no credentials, as users connect) neither
// sees that traffic on the peer subjects nor reaches a node by publishing
// there, and cannot log in as the peer user over TCP even with its
// password.
func TestPeerAccountKeepsRaftTrafficFromClients(t *testing.T) {
	servers := startCluster(t, 2, 0)
	tr1, in1 := newTransport(t, connectPeer(t, servers[0], "peer-1"), Config{NodeID: 1})
	tr2, in2 := newTransport(t, connectPeer(t, servers[1], "peer-2"), Config{NodeID: 2})

	var sniffed []*nats.Subscription
	for i, srv := range servers {
		client := connect(t, srv, "client")
		if host, _, err := net.SplitHostPort(client.ConnectedAddr()); err != nil || host != "127.0.0.1" {
			t.Fatalf("client %d connected at %q, want TCP", i, client.ConnectedAddr())
		}
		sub, err := client.SubscribeSync(DefaultClusterName + ".peer.>")
		if err != nil {
			t.Fatal(err)
		}
		sniffed = append(sniffed, sub)
		if err := client.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	warmUp(t, tr2, 1, in1)
	warmUp(t, tr1, 2, in2)
	if err := tr2.Send(1, []byte("from node 2")); err != nil {
		t.Fatal(err)
	}
	in1.waitFor(t, "node 2's frame at node 1", func(got []received) bool {
		for _, r := range got {
			if r.from == 2 && bytes.Equal(r.frame, []byte("from node 2")) {
				return true
			}
		}
		return false
	})

	// The frames between the nodes crossed both servers; no client saw
	// one. (The forgeries below would show up here: they are published in
	// the clients' own account.)
	for i, sub := range sniffed {
		if msg, err := sub.NextMsg(50 * time.Millisecond); err == nil {
			t.Fatalf("a client of server %d saw peer traffic on %s (%d bytes)", i+1, msg.Subject, len(msg.Data))
		}
	}

	// A client forges a well-formed envelope from node 2 and an
	// undecodable message, to node 1's peer subject on each server.
	forged := append(appendEnvelopeHeader(nil, 2), 6)
	forged = append(forged, "forged"...)
	for _, srv := range servers {
		client := connect(t, srv, "forger")
		for _, msg := range [][]byte{forged, {0xEE, 0xEE}} {
			if err := client.Publish(PeerSubject(DefaultClusterName, 1), msg); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Node 1 hears node 2 after the forgeries (a marker through the same
	// servers), and nothing from them.
	if err := tr2.Send(1, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	in1.waitFor(t, "node 2's marker at node 1", func(got []received) bool {
		return len(got) > 0 && bytes.Equal(got[len(got)-1].frame, []byte("marker"))
	})
	time.Sleep(100 * time.Millisecond)
	for _, r := range in1.snapshot() {
		if bytes.Equal(r.frame, []byte("forged")) {
			t.Fatal("node 1 received a frame a client published to its peer subject")
		}
	}
	if errs := tr1.Stats().DecodeErrors; errs != 0 {
		t.Fatalf("node 1 counted %d undecodable messages: a client's message reached its peer subject", errs)
	}

	// The peer user exists only in-process: over TCP, even with the
	// password, the server refuses it.
	if nc, err := nats.Connect(servers[0].ClientURL(), nats.UserInfo(PeerUser, servers[0].peerPassword)); err == nil {
		nc.Close()
		t.Fatal("the peer user logged in over TCP")
	}
}

// TestPeerAccountNeedsInProcess: the peer account is joined in-process,
// with no other credentials; Connect says so before dialling.
func TestPeerAccountNeedsInProcess(t *testing.T) {
	srv := startServer(t, EmbeddedConfig{})
	for _, cfg := range []ConnectConfig{
		{URLs: []string{srv.ClientURL()}, PeerAccount: true},
		{InProcess: srv, PeerAccount: true, User: "u", Password: "p"},
		{InProcess: srv, PeerAccount: true, Token: "t"},
		{InProcess: srv, PeerAccount: true, CredentialsFile: "x.creds"},
	} {
		if nc, err := Connect(cfg); err == nil {
			nc.Close()
			t.Fatalf("Connect(%+v) accepted", cfg)
		} else if !strings.Contains(err.Error(), "peer account") {
			t.Fatalf("Connect(%+v): %v, want an error naming the peer account", cfg, err)
		}
	}
	// A client without credentials still lands in the global account.
	nc := connect(t, srv, "anonymous")
	if !nc.IsConnected() {
		t.Fatal("client without credentials not connected")
	}
}
