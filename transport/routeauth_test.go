package transport

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestClusterPasswordKeepsOutOtherServers: servers that share a cluster
// password route to each other, the third through a route it learnt from
// the seed (gossip), while a server without the password, or with another,
// gets no route into the cluster.
func TestClusterPasswordKeepsOutOtherServers(t *testing.T) {
	const password = "route-secret"
	seed := startServer(t, EmbeddedConfig{ServerName: "s1", ClusterListen: "127.0.0.1:-1", ClusterPassword: password})
	members := []*EmbeddedServer{seed}
	for _, name := range []string{"s2", "s3"} {
		members = append(members, startServer(t, EmbeddedConfig{ServerName: name, ClusterListen: "127.0.0.1:-1",
			Routes: []string{seed.ClusterURL()}, ClusterPassword: password}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, s := range members {
		if err := s.WaitForRoutes(ctx, 2); err != nil {
			t.Fatalf("server %s: %v", s.Name(), err)
		}
	}
	var outsiders []*EmbeddedServer
	for name, pw := range map[string]string{"no-password": "", "other-password": "guess"} {
		outsiders = append(outsiders, startServer(t, EmbeddedConfig{ServerName: name, ClusterListen: "127.0.0.1:-1",
			Routes: []string{seed.ClusterURL()}, ClusterPassword: pw}))
	}
	// Outsiders retry their route (ConnectRetries -1); give them a few
	// attempts.
	time.Sleep(1500 * time.Millisecond)
	for _, s := range outsiders {
		if peers := s.RoutedServers(); len(peers) != 0 {
			t.Errorf("server %s without the cluster password has routes to %v", s.Name(), peers)
		}
	}
	for _, s := range members {
		if peers := s.RoutedServers(); len(peers) != 2 {
			t.Errorf("member %s has routes to %v, want the other 2 members only", s.Name(), peers)
		}
	}
}

// TestClusterPasswordConfigErrors: a password without a cluster address,
// and route URLs that carry credentials of their own beside it, are
// refused before the server starts.
func TestClusterPasswordConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  EmbeddedConfig
		want string
	}{
		{EmbeddedConfig{ClientListen: "127.0.0.1:-1", ClusterPassword: "x"}, "cluster listen"},
		{EmbeddedConfig{ClientListen: "127.0.0.1:-1", ClusterListen: "127.0.0.1:-1", ClusterPassword: "x",
			Routes: []string{"nats://u:p@127.0.0.1:6222"}}, "carries credentials"},
	} {
		srv, err := StartEmbedded(tc.cfg)
		if err == nil {
			srv.Shutdown()
			t.Fatalf("StartEmbedded(%+v) accepted", tc.cfg)
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), ":p@") {
			t.Fatalf("StartEmbedded(%+v): %v, want %q and no password", tc.cfg, err, tc.want)
		}
	}
}
