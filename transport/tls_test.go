package transport

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/raftmq/raftmq/transport/transporttest"
)

// TestClientTLS: with a certificate, the client port takes TLS
// connections from clients that trust its CA and refuses plain ones and
// clients that do not; with a client CA too, it also requires a client
// certificate that CA signed. In-process connections need no TLS.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	pki, other := transporttest.NewPKI(t, dir, "server"), transporttest.NewPKI(t, dir, "other")
	s := startServer(t, EmbeddedConfig{ClientListen: "127.0.0.1:-1", TLSCertFile: pki.CertFile, TLSKeyFile: pki.KeyFile})
	if !strings.HasPrefix(s.ClientURL(), "tls://") {
		t.Fatalf("client URL %s: want tls://", s.ClientURL())
	}
	url := strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
	connect := func(opts ...nats.Option) error {
		nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second), nats.MaxReconnects(0))...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(nats.RootCAs(pki.CAFile)); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := connect(); err == nil {
		t.Fatal("a plain client connected to the TLS port")
	}
	// nats.go upgrades to TLS by itself when the server requires it; a
	// client that does not is not served: no PONG to its PING.
	raw, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "nats://"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := raw.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err == nil {
		reply, _ := io.ReadAll(raw)
		if strings.Contains(string(reply), "PONG") {
			t.Fatalf("a plain-text client was served on the TLS port: %q", reply)
		}
	}
	if err := connect(nats.RootCAs(other.CAFile)); err == nil {
		t.Fatal("a client trusting another CA connected")
	}
	// In-process takes no TLS, whatever the URL's scheme or TLS files.
	for _, cfg := range []ConnectConfig{
		{InProcess: s},
		{InProcess: s, URLs: []string{"TLS://127.0.0.1:1"}, TLSCAFile: other.CAFile},
	} {
		nc, err := Connect(cfg)
		if err != nil {
			t.Fatalf("in-process connection to a TLS server (%+v): %v", cfg, err)
		}
		nc.Close()
	}

	mutual := startServer(t, EmbeddedConfig{ClientListen: "127.0.0.1:-1", TLSCertFile: pki.CertFile, TLSKeyFile: pki.KeyFile, TLSCAFile: pki.CAFile})
	url = strings.Replace(mutual.ClientURL(), "tls://", "nats://", 1)
	if err := connect(nats.RootCAs(pki.CAFile), nats.ClientCert(pki.CertFile, pki.KeyFile)); err != nil {
		t.Fatalf("client with a certificate the CA signed: %v", err)
	}
	if err := connect(nats.RootCAs(pki.CAFile)); err == nil {
		t.Fatal("a client without a certificate connected to a port that requires one")
	}
	if err := connect(nats.RootCAs(pki.CAFile), nats.ClientCert(other.CertFile, other.KeyFile)); err == nil {
		t.Fatal("a client with a certificate another CA signed connected")
	}
}

// TestRouteTLS: servers with route TLS from one CA route to each other
// (the third through a gossiped route, its certificate naming the IP it
// is dialled by), and a server whose certificate another CA signed gets
// no route, whether it dials a member or a member dials it, even when it
// trusts the members' CA itself.
func TestRouteTLS(t *testing.T) {
	dir := t.TempDir()
	pki, other := transporttest.NewPKI(t, dir, "cluster"), transporttest.NewPKI(t, dir, "intruder")
	tlsConfig := func(cfg EmbeddedConfig, p transporttest.PKI) EmbeddedConfig {
		cfg.ClusterTLSCertFile, cfg.ClusterTLSKeyFile, cfg.ClusterTLSCAFile = p.CertFile, p.KeyFile, p.CAFile
		return cfg
	}
	seed := startServer(t, tlsConfig(EmbeddedConfig{ServerName: "s1", ClusterListen: "127.0.0.1:-1"}, pki))
	members := []*EmbeddedServer{seed}
	for _, name := range []string{"s2", "s3"} {
		members = append(members, startServer(t, tlsConfig(EmbeddedConfig{ServerName: name, ClusterListen: "127.0.0.1:-1",
			Routes: []string{seed.ClusterURL()}}, pki)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, s := range members {
		if err := s.WaitForRoutes(ctx, 2); err != nil {
			t.Fatalf("server %s: %v", s.Name(), err)
		}
	}
	// Intruders present a certificate another CA signed but trust both
	// CAs, so that only the members' checks can keep them out: one dials
	// the seed, the other is dialled by a member.
	bundle := filepath.Join(dir, "both-cas.pem")
	var cas []byte
	for _, f := range []string{pki.CAFile, other.CAFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, b...)
	}
	if err := os.WriteFile(bundle, cas, 0o600); err != nil {
		t.Fatal(err)
	}
	lenient := other
	lenient.CAFile = bundle
	dialer := startServer(t, tlsConfig(EmbeddedConfig{ServerName: "intruder-dialer", ClusterListen: "127.0.0.1:-1",
		Routes: []string{seed.ClusterURL()}}, lenient))
	listener := startServer(t, tlsConfig(EmbeddedConfig{ServerName: "intruder-listener", ClusterListen: "127.0.0.1:-1"}, lenient))
	dialed := startServer(t, tlsConfig(EmbeddedConfig{ServerName: "s4", ClusterListen: "127.0.0.1:-1",
		Routes: []string{listener.ClusterURL()}}, pki))
	// Routes are retried (ConnectRetries -1): give them a few attempts.
	time.Sleep(1500 * time.Millisecond)
	for _, s := range []*EmbeddedServer{dialer, listener, dialed} {
		if peers := s.RoutedServers(); len(peers) != 0 {
			t.Errorf("%s has routes to %v across CAs", s.Name(), peers)
		}
	}
	for _, s := range members {
		if peers := s.RoutedServers(); len(peers) != 2 {
			t.Errorf("member %s has routes to %v, want the other 2 members only", s.Name(), peers)
		}
	}
}

// TestTLSConfigErrors: TLS settings that cannot work are refused before
// the server starts.
func TestTLSConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  EmbeddedConfig
		want string
	}{
		{EmbeddedConfig{TLSCertFile: "c.pem"}, "together"},
		{EmbeddedConfig{TLSCAFile: "ca.pem"}, "needs the server's"},
		{EmbeddedConfig{ClusterListen: "127.0.0.1:-1", ClusterTLSCertFile: "c.pem", ClusterTLSKeyFile: "k.pem"}, "all three"},
		{EmbeddedConfig{ClusterTLSCertFile: "c.pem", ClusterTLSKeyFile: "k.pem", ClusterTLSCAFile: "ca.pem"}, "cluster listen"},
		{EmbeddedConfig{ClusterListen: "127.0.0.1:-1", TLSCertFile: "c.pem", TLSKeyFile: "k.pem", TLSCAFile: "ca.pem",
			ClusterTLSCertFile: "c.pem", ClusterTLSKeyFile: "k.pem", ClusterTLSCAFile: "ca.pem"}, "must not be the client CA"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}

// TestRouteCAMustNotBeTheClientCAUnderAnotherName: a copy of the client CA
// file given as the route CA is refused as the same path is: any client
// certificate would join the cluster. Before, only the paths were
// compared. A route CA of its own is accepted.
func TestRouteCAMustNotBeTheClientCAUnderAnotherName(t *testing.T) {
	dir := t.TempDir()
	clients := transporttest.NewPKI(t, dir, "client")
	routes := transporttest.NewPKI(t, dir, "route")
	data, err := os.ReadFile(clients.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, "copy-of-client-ca.pem")
	if err := os.WriteFile(copied, data, 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(routeCA string) EmbeddedConfig {
		return EmbeddedConfig{ClusterListen: "127.0.0.1:-1",
			TLSCertFile: clients.CertFile, TLSKeyFile: clients.KeyFile, TLSCAFile: clients.CAFile,
			ClusterTLSCertFile: routes.CertFile, ClusterTLSKeyFile: routes.KeyFile, ClusterTLSCAFile: routeCA}
	}
	if err := config(copied).Validate(); err == nil || !strings.Contains(err.Error(), "must not be the client CA") {
		t.Fatalf("route CA a copy of the client CA: %v", err)
	}
	if err := config(routes.CAFile).Validate(); err != nil {
		t.Fatalf("a route CA of its own: %v", err)
	}
}
