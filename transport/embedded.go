package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultClientListen is the embedded server's default client address.
const DefaultClientListen = "127.0.0.1:4222"

// EmbeddedConfig configures an embedded NATS server.
type EmbeddedConfig struct {
	// ServerName names the server in the NATS cluster; empty lets
	// nats-server use its generated id.
	ServerName string
	// ClientListen is the client address host:port. Default
	// DefaultClientListen. Port 0 or -1 picks a free port (see ClientURL).
	ClientListen string
	// ClusterListen is the route listen address host:port; empty runs no
	// cluster listener. Port 0 or -1 picks a free port (see ClusterURL).
	ClusterListen string
	// Routes are the other servers' route URLs ("nats://host:port" or
	// "host:port"). Servers that list each other form one NATS cluster;
	// listing one seed is enough, the rest are gossiped.
	Routes []string
	// NATSClusterName is the NATS cluster name every routed server must
	// share. Default DefaultClusterName.
	NATSClusterName string
	// ClusterPassword, when set, is the routes' shared secret: the server
	// accepts a route only from a server that presents it (as RouteUser)
	// and presents it on its own routes, so every server of the cluster
	// sets the same. Empty accepts a route from any server that reaches
	// the cluster address.
	ClusterPassword string
	// TLSCertFile and TLSKeyFile (PEM, both or neither) make the client
	// port require TLS with this certificate; with TLSCAFile too, clients
	// must also present a certificate that CA signed. In-process
	// connections (the broker's own) use no TLS.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// ClusterTLSCertFile, ClusterTLSKeyFile and ClusterTLSCAFile (all
	// three, or none) make the routes use mutual TLS: each server presents
	// this certificate and accepts a route only from, and opens one only
	// to, a server whose certificate the CA signed. The certificate must
	// allow both server and client authentication. A server checks the
	// certificate of a server it dials against the host of the URL it
	// dials; a route learnt by gossip is dialled by IP address and checked
	// against the host of this server's first route URL, then the IP: so
	// either list every other server in Routes, by the names their
	// certificates carry, or give the certificates IP addresses. Use a CA
	// that signs route certificates only (not TLSCAFile's: any
	// certificate the CA signed joins the cluster, and with it every
	// account), and keep ClusterPassword too.
	ClusterTLSCertFile, ClusterTLSKeyFile, ClusterTLSCAFile string
	// MaxPayload is the server's max message payload; 0 keeps the NATS
	// default (1 MiB).
	MaxPayload int32
	// Logger receives the server's log at Info (notices), Warn, Error and
	// Debug levels; nil turns server logging off.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default 10s.
	ReadyTimeout time.Duration
}

// Validate reports whether the config is usable. It does not modify c.
func (c EmbeddedConfig) Validate() error {
	if c.ClientListen != "" {
		if _, _, err := splitListen(c.ClientListen); err != nil {
			return fmt.Errorf("transport: client listen: %w", err)
		}
	}
	if c.ClusterListen != "" {
		if _, _, err := splitListen(c.ClusterListen); err != nil {
			return fmt.Errorf("transport: cluster listen: %w", err)
		}
	}
	if len(c.Routes) > 0 && c.ClusterListen == "" {
		return errors.New("transport: routes need a cluster listen address")
	}
	if c.ClusterPassword != "" && c.ClusterListen == "" {
		return errors.New("transport: a cluster password needs a cluster listen address")
	}
	for _, r := range c.Routes {
		u, err := routeURL(r)
		if err != nil {
			return err
		}
		if u.User != nil && c.ClusterPassword != "" {
			return fmt.Errorf("transport: route %s carries credentials; with a cluster password give none", u.Redacted())
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("transport: the client TLS certificate and key must be given together")
	}
	if c.TLSCAFile != "" && c.TLSCertFile == "" {
		return errors.New("transport: a client TLS CA needs the server's TLS certificate and key")
	}
	clusterTLS := 0
	for _, f := range []string{c.ClusterTLSCertFile, c.ClusterTLSKeyFile, c.ClusterTLSCAFile} {
		if f != "" {
			clusterTLS++
		}
	}
	if clusterTLS != 0 && clusterTLS != 3 {
		return errors.New("transport: route TLS needs a certificate, its key and a CA, all three")
	}
	if clusterTLS == 3 && c.ClusterListen == "" {
		return errors.New("transport: route TLS needs a cluster listen address")
	}
	if clusterTLS == 3 && c.TLSCAFile != "" && (c.ClusterTLSCAFile == c.TLSCAFile || sharesCertificate(c.ClusterTLSCAFile, c.TLSCAFile)) {
		return errors.New("transport: the route CA must not be the client CA: a client certificate would join the cluster")
	}
	if c.MaxPayload < 0 {
		return fmt.Errorf("transport: max payload %d is negative", c.MaxPayload)
	}
	if c.ReadyTimeout < 0 {
		return fmt.Errorf("transport: ready timeout %v is negative", c.ReadyTimeout)
	}
	return nil
}

// sharesCertificate reports whether the PEM files a and b hold a
// certificate in common (a copy or a link of one CA file under another
// name, say). A file that cannot be read shares nothing: the server's start
// reports it.
func sharesCertificate(a, b string) bool {
	certificates := func(path string) [][]byte {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var ders [][]byte
		for {
			var block *pem.Block
			if block, data = pem.Decode(data); block == nil {
				return ders
			}
			if block.Type == "CERTIFICATE" {
				ders = append(ders, block.Bytes)
			}
		}
	}
	inB := certificates(b)
	for _, der := range certificates(a) {
		if slices.ContainsFunc(inB, func(other []byte) bool { return bytes.Equal(der, other) }) {
			return true
		}
	}
	return false
}

// splitListen parses host:port; port 0 and -1 mean "any free port".
func splitListen(hostPort string) (string, int, error) {
	host, portText, err := net.SplitHostPort(hostPort)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", hostPort, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port %q", hostPort, portText)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 means the default port to nats-server
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func routeURL(route string) (*url.URL, error) {
	text := route
	if !strings.Contains(text, "://") {
		text = "nats://" + text
	}
	u, err := url.Parse(text)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("transport: bad route %q", route)
	}
	return u, nil
}

// EmbeddedServer is a NATS server running inside this process.
type EmbeddedServer struct {
	server *server.Server
	// peerPassword is the password of PeerUser: random per server, and the
	// user may connect only in-process, so no client can join the peer
	// account.
	peerPassword string
}

// PeerAccount is the NATS account of an embedded server that carries the
// brokers' traffic to each other (Raft, and what the broker package sends
// only to brokers), apart from clients: a connection joins it only
// in-process, with ConnectConfig.PeerAccount. Clients land in the global
// account ($G), where peer subjects are neither seen nor reachable. Every
// embedded server defines it, so routed servers carry it between them.
const PeerAccount = "RAFTMQ_PEERS"

// RouteUser is the user a server presents on its routes when the cluster
// has a password (EmbeddedConfig.ClusterPassword).
const RouteUser = "raftmq-route"

// PeerUser is the user of PeerAccount (in-process connections only).
const PeerUser = "raftmq-peer"

// anonymousUser is the user a connection without credentials gets: the
// global account, as a server without accounts gives every connection.
const anonymousUser = "raftmq-client"

// inProcessConnection is nats-server's name of the in-process connection
// type (jwt.ConnectionTypeInProcess).
const inProcessConnection = "IN_PROCESS"

// peerAuth configures opts with the accounts and users described at
// PeerAccount, and returns the peer user's password.
func peerAuth(opts *server.Options) string {
	password := rand.Text()
	peers := server.NewAccount(PeerAccount)
	opts.Accounts = []*server.Account{peers}
	opts.Users = []*server.User{
		{Username: anonymousUser},
		{Username: PeerUser, Password: password, Account: peers,
			AllowedConnectionTypes: map[string]struct{}{inProcessConnection: {}}},
	}
	opts.NoAuthUser = anonymousUser
	return password
}

// tlsTimeout bounds a TLS handshake, in seconds (nats-server's unit).
const tlsTimeout = 2

// StartEmbedded starts a NATS server (JetStream off) and waits until it
// accepts client connections.
func StartEmbedded(cfg EmbeddedConfig) (*EmbeddedServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clientListen := cfg.ClientListen
	if clientListen == "" {
		clientListen = DefaultClientListen
	}
	host, port, _ := splitListen(clientListen)
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		MaxPayload: cfg.MaxPayload,
		JetStream:  false,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
	}
	if cfg.ClusterListen != "" {
		clusterHost, clusterPort, _ := splitListen(cfg.ClusterListen)
		opts.Cluster = server.ClusterOpts{
			Name: cfg.NATSClusterName,
			Host: clusterHost,
			Port: clusterPort,
			// Keep retrying seed routes that are not up yet.
			ConnectRetries: -1,
		}
		if opts.Cluster.Name == "" {
			opts.Cluster.Name = DefaultClusterName
		}
		if cfg.ClusterPassword != "" {
			opts.Cluster.Username, opts.Cluster.Password = RouteUser, cfg.ClusterPassword
		}
		for _, r := range cfg.Routes {
			u, _ := routeURL(r)
			if cfg.ClusterPassword != "" {
				// Routes the server learns from others (gossip) present
				// the cluster's credentials by themselves.
				u.User = url.UserPassword(RouteUser, cfg.ClusterPassword)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if cfg.TLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
			CaFile: cfg.TLSCAFile, Verify: cfg.TLSCAFile != ""})
		if err != nil {
			return nil, fmt.Errorf("transport: client TLS: %w", err)
		}
		opts.TLS, opts.TLSVerify, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLSCAFile != "", tc, tlsTimeout
	}
	if cfg.ClusterTLSCertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.ClusterTLSCertFile, KeyFile: cfg.ClusterTLSKeyFile,
			CaFile: cfg.ClusterTLSCAFile, Verify: true})
		if err != nil {
			return nil, fmt.Errorf("transport: route TLS: %w", err)
		}
		// The same CA verifies the servers this one dials (GenTLSConfig
		// sets it for the ones that dial it).
		tc.RootCAs = tc.ClientCAs
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, tlsTimeout
	}
	peerPassword := peerAuth(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("transport: embedded NATS server: %w", err)
	}
	// The server reports a port it cannot listen on (taken by another
	// server, say) only to its logger, as fatal, and then never gets
	// ready: the adapter keeps that message, so the start fails with it at
	// once instead of after the whole ready timeout.
	logger := slog.New(slog.DiscardHandler)
	if cfg.Logger != nil {
		logger = cfg.Logger.With("component", "nats-server")
	}
	adapter := slogAdapter{logger: logger, fatal: new(atomic.Pointer[string])}
	srv.SetLoggerV2(adapter, cfg.Logger != nil, false, false)
	srv.Start()
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		fatal := adapter.fatal.Load()
		if fatal == nil && time.Now().Before(deadline) {
			continue
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if fatal != nil {
			return nil, fmt.Errorf("transport: embedded NATS server on %s: %s", clientListen, *fatal)
		}
		return nil, fmt.Errorf("transport: embedded NATS server on %s not ready within %v", clientListen, timeout)
	}
	return &EmbeddedServer{server: srv, peerPassword: peerPassword}, nil
}

// ClientURL is the URL clients connect to, with the port actually bound.
func (e *EmbeddedServer) ClientURL() string { return e.server.ClientURL() }

// ClusterURL is the route URL other servers list in Routes, or "" when the
// server has no cluster listener.
func (e *EmbeddedServer) ClusterURL() string {
	addr := e.server.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats://" + addr.String()
}

// NumRoutes is the number of routes to other servers currently up.
func (e *EmbeddedServer) NumRoutes() int { return e.server.NumRoutes() }

// Name is the server's name.
func (e *EmbeddedServer) Name() string { return e.server.Name() }

// Server exposes the underlying nats-server for uses this type does not
// cover (in-process connections, monitoring).
func (e *EmbeddedServer) Server() *server.Server { return e.server }

// WaitForRoutes waits until the server has routes up to at least n other
// servers, or ctx ends.
func (e *EmbeddedServer) WaitForRoutes(ctx context.Context, n int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for len(e.RoutedServers()) < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("transport: routes to %d of %d servers up: %w", len(e.RoutedServers()), n, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// RoutedServers returns the names of the other servers this one has a
// route to, each once (nats-server pools several route connections per
// server, which NumRoutes counts one by one).
func (e *EmbeddedServer) RoutedServers() []string {
	routez, err := e.server.Routez(&server.RoutezOptions{})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var names []string
	for _, r := range routez.Routes {
		if !seen[r.RemoteID] {
			seen[r.RemoteID] = true
			names = append(names, r.RemoteName)
		}
	}
	return names
}

// Shutdown stops the server and waits until it has stopped.
func (e *EmbeddedServer) Shutdown() {
	e.server.Shutdown()
	e.server.WaitForShutdown()
}

// slogAdapter implements server.Logger on slog, and keeps the first fatal
// message.
type slogAdapter struct {
	logger *slog.Logger
	fatal  *atomic.Pointer[string]
}

func (a slogAdapter) Noticef(format string, v ...any) { a.logger.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, plaintextPasswordWarning) {
		// The route password is this package's own (ClusterPassword, from
		// a file or generated), held in memory only; the warning is
		// about passwords written in configuration files.
		return
	}
	a.logger.Warn(msg)
}

// plaintextPasswordWarning starts nats-server's warning about passwords not
// given as bcrypt hashes.
const plaintextPasswordWarning = "Plaintext passwords detected"

func (a slogAdapter) Fatalf(format string, v ...any) {
	message := fmt.Sprintf(format, v...)
	a.fatal.CompareAndSwap(nil, &message)
	a.logger.Error(message)
}
func (a slogAdapter) Errorf(format string, v ...any) { a.logger.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any) { a.logger.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any) { a.logger.Debug(fmt.Sprintf(format, v...)) }
