package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectConfig configures a client connection to a NATS system.
type ConnectConfig struct {
	// URLs are server URLs; each may itself be a comma-separated list.
	// Default nats.DefaultURL (nats://127.0.0.1:4222).
	URLs []string
	// Name is the connection name shown by NATS monitoring.
	Name string
	// CredentialsFile is a NATS .creds file (JWT and nkey seed).
	CredentialsFile string
	// User and Password authenticate with user/password.
	User, Password string
	// Token authenticates with a token.
	Token string
	// TLSCAFile, TLSCertFile and TLSKeyFile enable TLS: a CA to verify the
	// server and a client certificate and key (both or neither).
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// ConnectTimeout bounds one dial. Default 5s.
	ConnectTimeout time.Duration
	// ReconnectWait is the pause between reconnect attempts to one server.
	// Default 250ms.
	ReconnectWait time.Duration
	// MaxReconnects is the number of reconnect attempts; 0 means the
	// default, forever; a negative value also means forever.
	MaxReconnects int
	// InProcess, when set, connects to this embedded server through an
	// in-memory pipe instead of TCP (URLs then default to its ClientURL).
	// Use it for the broker's own embedded server.
	InProcess *EmbeddedServer
	// PeerAccount, with InProcess, joins the server's peer account
	// (transport.PeerAccount) instead of the global one: the connection
	// for the brokers' Raft traffic, which clients cannot reach. It takes
	// no other credentials.
	PeerAccount bool
	// Logger logs disconnects, reconnects and async errors; nil discards.
	Logger *slog.Logger
}

// Validate reports whether the config is usable. It does not modify c.
func (c ConnectConfig) Validate() error {
	if c.User == "" && c.Password != "" {
		return errors.New("transport: password without user")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("transport: TLS client certificate and key must be given together")
	}
	if c.Token != "" && c.User != "" {
		return errors.New("transport: token and user/password are mutually exclusive")
	}
	if c.PeerAccount && c.InProcess == nil {
		return errors.New("transport: the peer account is joined in-process only (set InProcess)")
	}
	if c.PeerAccount && (c.User != "" || c.Token != "" || c.CredentialsFile != "") {
		return errors.New("transport: the peer account takes no other credentials")
	}
	if c.ConnectTimeout < 0 || c.ReconnectWait < 0 {
		return errors.New("transport: negative timeout")
	}
	return nil
}

// plainURLs turns the tls:// URLs of a comma-separated list into nats://.
func plainURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		u = strings.TrimSpace(u)
		if len(u) >= len("tls://") && strings.EqualFold(u[:len("tls://")], "tls://") {
			u = "nats://" + u[len("tls://"):]
		}
		parts[i] = u
	}
	return strings.Join(parts, ",")
}

// AuthOptions are the nats.Connect options for the config's credentials
// and TLS (CredentialsFile, User and Password, Token, the TLS files), for
// a connection made elsewhere (the SDK's: clients.WithNATSOptions). Call
// Validate first.
func (c ConnectConfig) AuthOptions() []nats.Option {
	var opts []nats.Option
	if c.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLSCAFile))
	}
	if c.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLSCertFile, c.TLSKeyFile))
	}
	return opts
}

// Connect dials a NATS system with reconnects that never give up (by
// default), so a broker survives the restart of any one server.
func Connect(cfg ConnectConfig) (*nats.Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	url := nats.DefaultURL
	switch {
	case len(cfg.URLs) > 0:
		url = strings.Join(cfg.URLs, ",")
	case cfg.InProcess != nil:
		url = cfg.InProcess.ClientURL()
	}
	auth := cfg
	if cfg.InProcess != nil {
		// The in-process pipe takes no TLS (the server asks none of it);
		// a tls:// URL or TLS files would make the client start a
		// handshake.
		url = plainURLs(url)
		auth.TLSCAFile, auth.TLSCertFile, auth.TLSKeyFile = "", "", ""
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxReconnects := cfg.MaxReconnects
	if maxReconnects == 0 {
		maxReconnects = -1
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(orDefault(cfg.ConnectTimeout, 5*time.Second)),
		nats.ReconnectWait(orDefault(cfg.ReconnectWait, 250*time.Millisecond)),
		nats.MaxReconnects(maxReconnects),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				return // closed by its owner, not lost
			}
			logger.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("nats: async error", "subject", subject, "err", err)
		}),
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess.server))
	}
	if cfg.PeerAccount {
		opts = append(opts, nats.UserInfo(PeerUser, cfg.InProcess.peerPassword))
	}
	opts = append(opts, auth.AuthOptions()...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: connect to %s: %w", redactURLs(url), err)
	}
	return nc, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// redactURLs hides user info in URLs for error messages.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
