package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/transport"
)

// DevConfig configures a development cluster: N brokers in one process, each
// with its own embedded NATS server (connected to it in-process), the
// servers joined into one NATS cluster over loopback routes. Clients
// connect to the servers' client URLs over TCP.
type DevConfig struct {
	// Nodes is the number of brokers (all bootstrap brokers). Default 3.
	Nodes int
	// DataDir holds broker-<id> directories. Default "./raftmq-dev".
	DataDir string
	// ClientListen is broker 1's NATS client address; the others pick free
	// loopback ports. Default "127.0.0.1:4222"; "127.0.0.1:0" picks a free
	// port for broker 1 too (tests).
	ClientListen string
	// ClusterName prefixes every subject. Default "raftmq".
	ClusterName string
	// Registerer receives every broker's metrics (labelled by broker).
	Registerer prometheus.Registerer
	// Logger receives every broker's logs; nil discards.
	Logger *slog.Logger
	// Configure, when set, adjusts each broker's Config before it starts
	// (timings, limits, MetricsAddr).
	Configure func(*Config)
	// BrokersOverTCP connects each broker to its server over TCP loopback,
	// as a broker connects to an external NATS system, instead of through
	// the in-process pipe (the default, as for a broker's own embedded
	// server). For measuring what the pipe saves; clients always use TCP.
	BrokersOverTCP bool
	// MaxPayload is the embedded servers' max message payload; 0 keeps
	// the NATS default (1 MiB).
	MaxPayload int32
}

// DevCluster is a running development cluster. Its methods are safe for
// concurrent use.
type DevCluster struct {
	cfg     DevConfig
	servers []*transport.EmbeddedServer

	mu      sync.Mutex
	brokers map[uint64]*Broker
	configs map[uint64]Config
}

// StartDev starts a development cluster and waits until it is ready (every
// broker holds metadata). Stop it with Close.
func StartDev(ctx context.Context, cfg DevConfig) (_ *DevCluster, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 0 || cfg.Nodes > 99 {
		return nil, fmt.Errorf("broker: dev cluster of %d nodes; use 1..99", cfg.Nodes)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./raftmq-dev"
	}
	if cfg.ClientListen == "" {
		cfg.ClientListen = transport.DefaultClientListen
	}
	c := &DevCluster{cfg: cfg, brokers: map[uint64]*Broker{}, configs: map[uint64]Config{}}
	defer func() {
		if err != nil {
			_ = c.Close(context.Background())
		}
	}()
	// The servers route only among themselves: another process on this
	// machine that finds the route ports cannot join them.
	routePassword := rand.Text()
	var seed string
	for i := range cfg.Nodes {
		serverCfg := transport.EmbeddedConfig{
			ServerName:      fmt.Sprintf("raftmq-dev-%d", i+1),
			ClientListen:    "127.0.0.1:0",
			ClusterListen:   "127.0.0.1:0",
			ClusterPassword: routePassword,
			MaxPayload:      cfg.MaxPayload,
		}
		if i == 0 {
			serverCfg.ClientListen = cfg.ClientListen
		} else {
			serverCfg.Routes = []string{seed}
		}
		if cfg.Nodes == 1 {
			serverCfg.ClusterListen, serverCfg.ClusterPassword = "", ""
		}
		server, err := transport.StartEmbedded(serverCfg)
		if err != nil {
			return nil, fmt.Errorf("broker: dev NATS server %d: %w", i+1, err)
		}
		c.servers = append(c.servers, server)
		if i == 0 {
			seed = server.ClusterURL()
		}
	}
	for _, server := range c.servers {
		if err := server.WaitForRoutes(ctx, cfg.Nodes-1); err != nil {
			return nil, fmt.Errorf("broker: dev NATS cluster: %w", err)
		}
	}
	bootstrap := make([]uint64, cfg.Nodes)
	for i := range bootstrap {
		bootstrap[i] = uint64(i + 1)
	}
	for i, server := range c.servers {
		brokerCfg := DefaultConfig()
		brokerCfg.ID = uint64(i + 1)
		brokerCfg.DataDir = filepath.Join(cfg.DataDir, fmt.Sprintf("broker-%d", i+1))
		brokerCfg.Bootstrap = bootstrap
		if cfg.ClusterName != "" {
			brokerCfg.ClusterName = cfg.ClusterName
		}
		// Each broker reaches its own server in-process (one socket hop
		// each way between brokers: the route); the server outlives the
		// broker across StopBroker and StartBroker, which connects anew.
		brokerCfg.NATS = NATSConfig{Connect: transport.ConnectConfig{URLs: []string{server.ClientURL()}}}
		if !cfg.BrokersOverTCP {
			brokerCfg.NATS.Connect.InProcess = server
		}
		brokerCfg.Registerer = cfg.Registerer
		brokerCfg.Logger = cfg.Logger
		if cfg.Configure != nil {
			cfg.Configure(&brokerCfg)
		}
		c.configs[brokerCfg.ID] = brokerCfg
	}
	for id := range c.configs {
		if err := c.StartBroker(ctx, id); err != nil {
			return nil, err
		}
	}
	return c, c.WaitReady(ctx)
}

// ClientURLs are the NATS client URLs of every server, broker 1's first.
func (c *DevCluster) ClientURLs() []string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = s.ClientURL()
	}
	return urls
}

// Broker returns the running broker with the id, nil when it is stopped.
func (c *DevCluster) Broker(id uint64) *Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.brokers[id]
}

// StartBroker (re)starts a stopped broker on its data directory.
func (c *DevCluster) StartBroker(ctx context.Context, id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg, ok := c.configs[id]
	if !ok {
		return fmt.Errorf("broker: dev cluster has no broker %d", id)
	}
	if c.brokers[id] != nil {
		return fmt.Errorf("broker: dev broker %d is running", id)
	}
	b, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	c.brokers[id] = b
	return nil
}

// StopBroker stops a broker gracefully (its NATS server keeps running).
func (c *DevCluster) StopBroker(ctx context.Context, id uint64) error {
	c.mu.Lock()
	b := c.brokers[id]
	delete(c.brokers, id)
	c.mu.Unlock()
	if b == nil {
		return fmt.Errorf("broker: dev broker %d is not running", id)
	}
	return b.Close(ctx)
}

// WaitReady waits until every running broker is ready.
func (c *DevCluster) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		c.mu.Lock()
		for _, b := range c.brokers {
			ready = ready && b.Ready()
		}
		c.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: dev cluster not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops every broker, then the NATS servers.
func (c *DevCluster) Close(ctx context.Context) error {
	c.mu.Lock()
	brokers := c.brokers
	c.brokers = map[uint64]*Broker{}
	c.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, len(brokers))
	for _, b := range brokers {
		wg.Go(func() { errs <- b.Close(ctx) })
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	for _, s := range c.servers {
		s.Shutdown()
	}
	c.servers = nil
	return errors.Join(all...)
}
