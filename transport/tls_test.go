package transport

import (
	"context"
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
	if err := connect(nats.RootCAs(other.CAFile)); err == nil {
		t.Fatal("a client trusting another CA connected")
	}
	nc, err := Connect(ConnectConfig{InProcess: s})
	if err != nil {
		t.Fatalf("in-process connection to a TLS server: %v", err)
	}
	nc.Close()

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
// (the third through a gossiped route), and a server whose certificate
// another CA signed gets no route.
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
	intruder := startServer(t, tlsConfig(EmbeddedConfig{ServerName: "intruder", ClusterListen: "127.0.0.1:-1",
		Routes: []string{seed.ClusterURL()}}, other))
	time.Sleep(1500 * time.Millisecond)
	if peers := routedServers(t, intruder); len(peers) != 0 {
		t.Errorf("a server with another CA's certificate has routes to %v", peers)
	}
	for _, s := range members {
		if peers := routedServers(t, s); len(peers) != 2 {
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
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
}
