package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/transport"
)

const devUsage = `
Usage: raftmq dev [--nodes 3] [--data DIR] [flags]

Runs N brokers with an embedded NATS cluster in this process on loopback
ports, the first on 127.0.0.1:4222 so the client commands reach it without
--server. For trying raftmq out: without --data the data lives in a
temporary directory removed on exit. Ctrl-C (or SIGTERM) stops it.
--metrics-addr serves every broker's metrics (labelled by broker) on
/metrics, and broker 1's /healthz and /readyz.

Examples:
  raftmq dev --nodes 3
  raftmq dev --metrics-addr 127.0.0.1:9090
`

// devConfig configures an in-process development cluster.
type devConfig struct {
	nodes int
	// dataDir holds one directory per broker; "" makes a temporary one that
	// Close removes.
	dataDir string
	// listen is the first broker's NATS client address; the others pick
	// free loopback ports.
	listen string
	// metricsAddr, when set, serves /metrics (every broker's, on one
	// registry), /healthz and /readyz (broker 1's) on it.
	metricsAddr string
	logger      *slog.Logger
}

// devCluster is broker.DevCluster plus its data directory's lifetime.
type devCluster struct {
	cluster   *broker.DevCluster
	nodes     int
	dataDir   string
	temporary bool
}

func runDev(ctx context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("dev", devUsage)
	config := devConfig{}
	fs.IntVar(&config.nodes, "nodes", 3, "number of `brokers`")
	fs.StringVar(&config.dataDir, "data", "", "data `directory` (kept on exit; default: a temporary directory, removed on exit)")
	fs.StringVar(&config.listen, "nats-listen", transport.DefaultClientListen, "first broker's NATS client `address`")
	fs.StringVar(&config.metricsAddr, "metrics-addr", "", "serve every broker's /metrics, and broker 1's /healthz and /readyz, on this `address`")
	logLevel := fs.String("log-level", "warn", "log `level`: debug, info, warn or error")
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 0 {
		return c.usageError(fs, "unexpected arguments %q", positional)
	}
	if config.nodes < 1 || config.nodes > 9 {
		return c.usageError(fs, "--nodes %d: want 1 to 9", config.nodes)
	}
	logger, err := newLogger(c.stderr, *logLevel)
	if err != nil {
		return c.usageError(fs, "%v", err)
	}
	config.logger = logger

	fmt.Fprintf(c.stderr, "raftmq dev: starting %s...\n", plural(config.nodes, "broker"))
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	cluster, err := startDevCluster(startCtx, config)
	cancel()
	if err != nil {
		// The embedded server reports a taken port in its message only.
		if strings.Contains(err.Error(), "address already in use") {
			err = withHint(err, fmt.Sprintf("another process (a raftmq dev, a NATS server) listens on %s; run this one elsewhere with --nats-listen 127.0.0.1:PORT "+
				"and give the client commands --server nats://127.0.0.1:PORT", config.listen))
		}
		return c.fail(fs.Name(), err)
	}
	cluster.printWelcome(c.stdout)
	<-ctx.Done()
	fmt.Fprintln(c.stderr, "raftmq dev: stopping")
	if err := cluster.Close(); err != nil {
		return c.fail(fs.Name(), err)
	}
	return exitOK
}

// startDevCluster starts the brokers and waits until the cluster has a
// controller leader and sees every broker alive.
func startDevCluster(ctx context.Context, config devConfig) (_ *devCluster, err error) {
	d := &devCluster{nodes: config.nodes, dataDir: config.dataDir}
	if d.dataDir == "" {
		if d.dataDir, err = os.MkdirTemp("", "raftmq-dev-"); err != nil {
			return nil, err
		}
		d.temporary = true
	}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	devConfig := broker.DevConfig{
		Nodes:        config.nodes,
		DataDir:      d.dataDir,
		ClientListen: config.listen,
		Logger:       config.logger,
	}
	if config.metricsAddr != "" {
		// The brokers share one registry (their metrics carry a broker
		// label); broker 1's HTTP server serves it.
		registry := prometheus.NewRegistry()
		registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		devConfig.Registerer = registry
		devConfig.Configure = func(brokerConfig *broker.Config) {
			if brokerConfig.ID == 1 {
				brokerConfig.MetricsAddr = config.metricsAddr
			}
		}
	}
	d.cluster, err = broker.StartDev(ctx, devConfig)
	if err != nil {
		return nil, err
	}
	if err := d.waitReady(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// URL is the first broker's NATS client URL.
func (d *devCluster) URL() string { return d.cluster.ClientURLs()[0] }

// metricsURL is the URL of /metrics, "" without --metrics-addr.
func (d *devCluster) metricsURL() string {
	addr := d.cluster.Broker(1).HTTPAddr()
	if addr == "" {
		return ""
	}
	return "http://" + addr + "/metrics"
}

// waitReady waits until a client sees a controller leader and every broker alive.
func (d *devCluster) waitReady(ctx context.Context) error {
	client, err := clients.Connect(ctx, d.URL(), clients.WithRequestTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		status, err := client.ClusterStatus(ctx)
		if err == nil {
			alive := 0
			for _, b := range status.Brokers {
				if b.Alive {
					alive++
				}
			}
			if status.ControllerLeader != 0 && alive == d.nodes {
				return nil
			}
			last = fmt.Sprintf("controller leader %d, %d of %s alive", status.ControllerLeader, alive, plural(d.nodes, "broker"))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready (%s): %w", last, ctx.Err())
		case <-tick.C:
		}
	}
}

func (d *devCluster) printWelcome(out io.Writer) {
	fmt.Fprintf(out, "raftmq dev: %s running.\n", plural(d.nodes, "broker"))
	for i, url := range d.cluster.ClientURLs() {
		fmt.Fprintf(out, "  broker %d  %s\n", i+1, url)
	}
	if d.temporary {
		fmt.Fprintf(out, "  data      %s (removed on exit)\n", d.dataDir)
	} else {
		fmt.Fprintf(out, "  data      %s\n", d.dataDir)
	}
	if url := d.metricsURL(); url != "" {
		fmt.Fprintf(out, "  metrics   %s\n", url)
	}
	server := ""
	if url := d.URL(); url != clients.DefaultServerURL {
		server = " --server " + url
	}
	fmt.Fprintf(out, `
Next, in another terminal:
  raftmq topic create orders --partitions 3%[1]s
  echo hello | raftmq produce orders%[1]s
  raftmq consume orders --from earliest --count 1%[1]s
  raftmq cluster status%[1]s

Press Ctrl-C to stop.
`, server)
}

// Close stops every broker and removes a temporary data directory.
func (d *devCluster) Close() error {
	var errs []error
	if d.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs = append(errs, d.cluster.Close(ctx))
	}
	if d.temporary {
		errs = append(errs, os.RemoveAll(d.dataDir))
	}
	return errors.Join(errs...)
}
