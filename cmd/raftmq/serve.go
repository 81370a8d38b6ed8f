package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/transport"
)

const serveUsage = `
Usage: raftmq serve [--id N] [--data DIR] [--bootstrap 1,2,3] [--nats-listen HOST:PORT]
                    [--nats-cluster-listen HOST:PORT] [--nats-routes URL,...]
                    [--nats-cluster-password-file FILE] [--nats-url URL]
                    [--metrics-addr HOST:PORT] [--config FILE] [flags]

Runs one broker. With no flags it serves a single-broker cluster with an
embedded NATS server on 127.0.0.1:4222 and data in ./raftmq-data.

By default the broker embeds a NATS server; brokers on several machines join
their servers into one NATS cluster with --nats-cluster-listen and
--nats-routes. --nats-url connects to an existing NATS system instead (with
the --nats-creds, --nats-user/--nats-password-file, --nats-token-file and
--nats-tls-* options; --nats-password and --nats-token take the secret
itself, which ps shows to every user of the machine). Every broker of a
cluster lists the same --bootstrap ids: the brokers that run the
controller.

--config FILE reads the same settings from a JSON object whose keys are the
flag names with underscores ({"id":2,"bootstrap":[1,2,3],"nats_routes":[...]});
flags given on the command line override it.

SIGINT or SIGTERM hands this broker's leaderships to other replicas,
flushes and exits.

Raft traffic between brokers runs in an account of the embedded servers
that only the brokers can join; --nats-cluster-password-file makes the
servers route only with servers that present the same password (without
it, any server that reaches the route address joins), and the
--nats-cluster-tls-* files encrypt the routes with mutual TLS. The
--nats-listen-tls-* files make the client port require TLS (clients then
connect to tls://host:port with --tls-ca). See the README, Security.

Example, broker 2 of three on three machines:
  raftmq serve --id 2 --bootstrap 1,2,3 --data /var/lib/raftmq \
    --nats-listen 0.0.0.0:4222 --nats-cluster-listen 0.0.0.0:6222 \
    --nats-routes nats://host1:6222,nats://host3:6222 \
    --nats-cluster-password-file /etc/raftmq/route-password --metrics-addr :9090
`

// serveOptions are serve's settings, from --config and flags.
type serveOptions struct {
	ID                uint64   `json:"id"`
	Data              string   `json:"data"`
	Bootstrap         []uint64 `json:"bootstrap"`
	ClusterName       string   `json:"cluster_name"`
	NATSListen        string   `json:"nats_listen"`
	NATSClusterListen string   `json:"nats_cluster_listen"`
	NATSRoutes        []string `json:"nats_routes"`
	// NATSClusterPasswordFile holds the routes' shared password.
	NATSClusterPasswordFile string `json:"nats_cluster_password_file"`
	// The embedded server's TLS: its client port's, its routes'.
	NATSListenTLSCert  string `json:"nats_listen_tls_cert"`
	NATSListenTLSKey   string `json:"nats_listen_tls_key"`
	NATSListenTLSCA    string `json:"nats_listen_tls_ca"`
	NATSClusterTLSCert string `json:"nats_cluster_tls_cert"`
	NATSClusterTLSKey  string `json:"nats_cluster_tls_key"`
	NATSClusterTLSCA   string `json:"nats_cluster_tls_ca"`
	NATSURL            string `json:"nats_url"`
	NATSCreds          string `json:"nats_creds"`
	NATSUser           string `json:"nats_user"`
	NATSPassword       string `json:"nats_password"`
	NATSToken          string `json:"nats_token"`
	NATSPasswordFile   string `json:"nats_password_file"`
	NATSTokenFile      string `json:"nats_token_file"`
	NATSTLSCA          string `json:"nats_tls_ca"`
	NATSTLSCert        string `json:"nats_tls_cert"`
	NATSTLSKey         string `json:"nats_tls_key"`
	MetricsAddr        string `json:"metrics_addr"`
	LogLevel           string `json:"log_level"`
}

func defaultServeOptions() serveOptions {
	defaults := broker.DefaultConfig()
	return serveOptions{
		ID:          defaults.ID,
		Data:        defaults.DataDir,
		ClusterName: defaults.ClusterName,
		NATSListen:  transport.DefaultClientListen,
		LogLevel:    "info",
	}
}

func runServe(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("serve", serveUsage)
	defaults := defaultServeOptions()
	flagValues := defaults
	var bootstrap, routes, configFile string
	fs.Uint64Var(&flagValues.ID, "id", defaults.ID, "this broker's `id`, unique in the cluster")
	fs.StringVar(&flagValues.Data, "data", defaults.Data, "data `directory`")
	fs.StringVar(&bootstrap, "bootstrap", "", "comma-separated broker `ids` running the controller (default: this broker alone)")
	fs.StringVar(&flagValues.ClusterName, "cluster-name", defaults.ClusterName, "cluster `name`, the prefix of every NATS subject")
	fs.StringVar(&flagValues.NATSListen, "nats-listen", defaults.NATSListen, "embedded NATS server's client `address`")
	fs.StringVar(&flagValues.NATSClusterListen, "nats-cluster-listen", "", "embedded NATS server's route `address` (clusters it with other brokers)")
	fs.StringVar(&routes, "nats-routes", "", "comma-separated route `URLs` of other brokers' NATS servers")
	fs.StringVar(&flagValues.NATSClusterPasswordFile, "nats-cluster-password-file", "", "`file` holding the routes' shared password: the embedded server routes only with servers that present it")
	fs.StringVar(&flagValues.NATSListenTLSCert, "nats-listen-tls-cert", "", "certificate `file` (PEM): the embedded server's client port requires TLS")
	fs.StringVar(&flagValues.NATSListenTLSKey, "nats-listen-tls-key", "", "key `file` (PEM) of --nats-listen-tls-cert")
	fs.StringVar(&flagValues.NATSListenTLSCA, "nats-listen-tls-ca", "", "CA `file`: clients must also present a certificate it signed")
	fs.StringVar(&flagValues.NATSClusterTLSCert, "nats-cluster-tls-cert", "", "certificate `file` (PEM, server and client use) for mutual TLS on the routes")
	fs.StringVar(&flagValues.NATSClusterTLSKey, "nats-cluster-tls-key", "", "key `file` of --nats-cluster-tls-cert")
	fs.StringVar(&flagValues.NATSClusterTLSCA, "nats-cluster-tls-ca", "", "CA `file` that signed every broker's route certificate")
	fs.StringVar(&flagValues.NATSURL, "nats-url", "", "connect to this existing NATS system (`URLs`) instead of embedding a server")
	fs.StringVar(&flagValues.NATSCreds, "nats-creds", "", "NATS credentials `file` (with --nats-url)")
	fs.StringVar(&flagValues.NATSUser, "nats-user", "", "NATS `user` (with --nats-url)")
	fs.StringVar(&flagValues.NATSPassword, "nats-password", "", "NATS `password` (with --nats-user)")
	fs.StringVar(&flagValues.NATSPasswordFile, "nats-password-file", "", "`file` holding the NATS password (with --nats-user; instead of --nats-password)")
	fs.StringVar(&flagValues.NATSToken, "nats-token", "", "NATS `token` (with --nats-url)")
	fs.StringVar(&flagValues.NATSTokenFile, "nats-token-file", "", "`file` holding the NATS token (with --nats-url; instead of --nats-token)")
	fs.StringVar(&flagValues.NATSTLSCA, "nats-tls-ca", "", "CA `file` to verify the NATS server")
	fs.StringVar(&flagValues.NATSTLSCert, "nats-tls-cert", "", "client certificate `file` for NATS TLS")
	fs.StringVar(&flagValues.NATSTLSKey, "nats-tls-key", "", "client key `file` for NATS TLS")
	fs.StringVar(&flagValues.MetricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this `address`")
	fs.StringVar(&flagValues.LogLevel, "log-level", defaults.LogLevel, "log `level`: debug, info, warn or error")
	fs.StringVar(&configFile, "config", "", "read settings from this JSON `file` (flags override it)")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 0 {
		return c.usageError(fs, "unexpected arguments %q", positional)
	}

	options := defaults
	if configFile != "" {
		if err := readServeConfig(configFile, &options); err != nil {
			return c.usageError(fs, "--config: %v", err)
		}
	}
	var flagErr error
	fs.Visit(func(f *flag.Flag) {
		if err := applyServeFlag(&options, &flagValues, f.Name, bootstrap, routes); err != nil && flagErr == nil {
			flagErr = err
		}
	})
	if flagErr != nil {
		return c.usageError(fs, "%v", flagErr)
	}
	logger, err := newLogger(c.stderr, options.LogLevel)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	config, err := options.brokerConfig(logger)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	if err := config.Validate(); err != nil {
		return c.usageError(fs, "%v", err)
	}

	b, err := broker.Start(ctx, config)
	if err != nil && ctx.Err() != nil {
		// Interrupted (Ctrl-C, SIGTERM) while starting: a stop asked for.
		fmt.Fprintf(c.stderr, "raftmq: broker %d stopped before it was ready\n", config.ID)
		return exitOK
	}
	if err != nil {
		return c.fail(fs.Name(), err)
	}
	where := reachableClientURL(b.ClientURL(), os.Hostname)
	if where == "" {
		where = options.NATSURL
	}
	fmt.Fprintf(c.stderr, "raftmq: broker %d serving; NATS clients connect to %s; data in %s\n", config.ID, where, config.DataDir)
	<-ctx.Done()
	fmt.Fprintf(c.stderr, "raftmq: broker %d stopping\n", config.ID)
	if err := b.Close(context.Background()); err != nil {
		return c.fail(fs.Name(), err)
	}
	return exitOK
}

// readSecretFile returns the secret a file holds, without surrounding
// white space (a trailing newline, say); an empty one is an error.
func readSecretFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// secretOrFile returns the secret given as --NAME value or in --NAME-file;
// giving both is an error.
func secretOrFile(name, value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("--%s and --%s-file are alternatives: give one", name, name)
	}
	secret, err := readSecretFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	return secret, nil
}

// readServeConfig overlays a JSON config file on options.
func readServeConfig(path string, options *serveOptions) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(options); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// applyServeFlag copies one flag given on the command line into options.
func applyServeFlag(options, values *serveOptions, name, bootstrap, routes string) error {
	switch name {
	case "id":
		options.ID = values.ID
	case "data":
		options.Data = values.Data
	case "bootstrap":
		ids, err := parseIDs(bootstrap)
		if err != nil {
			return fmt.Errorf("--bootstrap %q: %w", bootstrap, err)
		}
		options.Bootstrap = ids
	case "cluster-name":
		options.ClusterName = values.ClusterName
	case "nats-listen":
		options.NATSListen = values.NATSListen
	case "nats-cluster-listen":
		options.NATSClusterListen = values.NATSClusterListen
	case "nats-routes":
		options.NATSRoutes = splitList(routes)
	case "nats-cluster-password-file":
		options.NATSClusterPasswordFile = values.NATSClusterPasswordFile
	case "nats-listen-tls-cert":
		options.NATSListenTLSCert = values.NATSListenTLSCert
	case "nats-listen-tls-key":
		options.NATSListenTLSKey = values.NATSListenTLSKey
	case "nats-listen-tls-ca":
		options.NATSListenTLSCA = values.NATSListenTLSCA
	case "nats-cluster-tls-cert":
		options.NATSClusterTLSCert = values.NATSClusterTLSCert
	case "nats-cluster-tls-key":
		options.NATSClusterTLSKey = values.NATSClusterTLSKey
	case "nats-cluster-tls-ca":
		options.NATSClusterTLSCA = values.NATSClusterTLSCA
	case "nats-url":
		options.NATSURL = values.NATSURL
	case "nats-creds":
		options.NATSCreds = values.NATSCreds
	case "nats-user":
		options.NATSUser = values.NATSUser
	case "nats-password":
		options.NATSPassword = values.NATSPassword
	case "nats-password-file":
		options.NATSPasswordFile = values.NATSPasswordFile
	case "nats-token":
		options.NATSToken = values.NATSToken
	case "nats-token-file":
		options.NATSTokenFile = values.NATSTokenFile
	case "nats-tls-ca":
		options.NATSTLSCA = values.NATSTLSCA
	case "nats-tls-cert":
		options.NATSTLSCert = values.NATSTLSCert
	case "nats-tls-key":
		options.NATSTLSKey = values.NATSTLSKey
	case "metrics-addr":
		options.MetricsAddr = values.MetricsAddr
	case "log-level":
		options.LogLevel = values.LogLevel
	}
	return nil
}

// embeddedTLS reports whether any TLS file of the embedded server is set.
func (o *serveOptions) embeddedTLS() bool {
	return o.NATSListenTLSCert != "" || o.NATSListenTLSKey != "" || o.NATSListenTLSCA != "" ||
		o.NATSClusterTLSCert != "" || o.NATSClusterTLSKey != "" || o.NATSClusterTLSCA != ""
}

// brokerConfig turns the options into a broker configuration.
func (o *serveOptions) brokerConfig(logger *slog.Logger) (broker.Config, error) {
	config := broker.DefaultConfig()
	config.ID = o.ID
	config.DataDir = o.Data
	config.Bootstrap = o.Bootstrap
	if len(config.Bootstrap) == 0 {
		config.Bootstrap = []uint64{o.ID}
	}
	config.ClusterName = o.ClusterName
	config.MetricsAddr = o.MetricsAddr
	config.Logger = logger
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	config.Registerer = registry
	config.NATS.Connect = transport.ConnectConfig{
		CredentialsFile: o.NATSCreds, User: o.NATSUser, Password: o.NATSPassword, Token: o.NATSToken,
		TLSCAFile: o.NATSTLSCA, TLSCertFile: o.NATSTLSCert, TLSKeyFile: o.NATSTLSKey,
	}
	if o.NATSURL != "" {
		if o.NATSClusterListen != "" || len(o.NATSRoutes) > 0 || o.NATSClusterPasswordFile != "" || o.embeddedTLS() {
			return config, fmt.Errorf("--nats-url connects to an existing NATS system; --nats-cluster-listen, --nats-routes, --nats-cluster-password-file and the --nats-listen-tls-* and --nats-cluster-tls-* files configure the embedded one: give one or the other")
		}
		config.NATS.Embedded = nil
		config.NATS.Connect.URLs = splitList(o.NATSURL)
		var err error
		if config.NATS.Connect.Password, err = secretOrFile("nats-password", o.NATSPassword, o.NATSPasswordFile); err != nil {
			return config, err
		}
		if config.NATS.Connect.Token, err = secretOrFile("nats-token", o.NATSToken, o.NATSTokenFile); err != nil {
			return config, err
		}
		return config, nil
	}
	if o.NATSCreds != "" || o.NATSUser != "" || o.NATSToken != "" || o.NATSPasswordFile != "" || o.NATSTokenFile != "" ||
		o.NATSTLSCA != "" || o.NATSTLSCert != "" || o.NATSTLSKey != "" {
		return config, fmt.Errorf("NATS credentials and --nats-tls-* are for --nats-url; the broker reaches its embedded server in-process (--nats-listen-tls-* give that server's client port TLS)")
	}
	if len(o.NATSRoutes) > 0 && o.NATSClusterListen == "" {
		return config, fmt.Errorf("--nats-routes needs --nats-cluster-listen")
	}
	config.NATS.Embedded = &transport.EmbeddedConfig{
		ServerName:    fmt.Sprintf("raftmq-%d", o.ID),
		ClientListen:  o.NATSListen,
		ClusterListen: o.NATSClusterListen,
		Routes:        o.NATSRoutes,
		TLSCertFile:   o.NATSListenTLSCert, TLSKeyFile: o.NATSListenTLSKey, TLSCAFile: o.NATSListenTLSCA,
		ClusterTLSCertFile: o.NATSClusterTLSCert, ClusterTLSKeyFile: o.NATSClusterTLSKey, ClusterTLSCAFile: o.NATSClusterTLSCA,
	}
	if logger != nil {
		// The server's warnings and errors: a route refused for a wrong
		// password or an untrusted certificate is only ever said there.
		// Its notices (listening, routes up and down) stay out.
		config.NATS.Embedded.Logger = slog.New(warnFloor{logger.Handler()})
	}
	if err := config.NATS.Embedded.Validate(); err != nil {
		return config, fmt.Errorf("embedded NATS server: %w", err)
	}
	if o.NATSClusterPasswordFile != "" {
		if o.NATSClusterListen == "" {
			return config, fmt.Errorf("--nats-cluster-password-file needs --nats-cluster-listen")
		}
		password, err := readSecretFile(o.NATSClusterPasswordFile)
		if err != nil {
			return config, fmt.Errorf("--nats-cluster-password-file: %w", err)
		}
		config.NATS.Embedded.ClusterPassword = password
	}
	return config, nil
}

func newLogger(out io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: l})), nil
}

func parseIDs(text string) ([]uint64, error) {
	var ids []uint64
	for _, part := range splitList(text) {
		id, err := strconv.ParseUint(part, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%q is not a broker id (a positive integer)", part)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no broker ids")
	}
	return ids, nil
}

func splitList(text string) []string {
	var out []string
	for _, part := range strings.Split(text, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// warnFloor passes on records at Warn and above only.
type warnFloor struct{ slog.Handler }

func (h warnFloor) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn && h.Handler.Enabled(ctx, level)
}

func (h warnFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnFloor{h.Handler.WithAttrs(attrs)}
}

func (h warnFloor) WithGroup(name string) slog.Handler { return warnFloor{h.Handler.WithGroup(name)} }

// reachableClientURL is the client URL serve prints: one listening on all
// interfaces (0.0.0.0 or ::), which a client cannot dial as written, is
// given with this machine's host name instead, saying so.
func reachableClientURL(raw string, hostname func() (string, error)) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsUnspecified() {
		return raw
	}
	name, err := hostname()
	if err != nil || name == "" {
		return raw + " (all interfaces)"
	}
	u.Host = net.JoinHostPort(name, u.Port())
	return u.String() + " (all interfaces)"
}
