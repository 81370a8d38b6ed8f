package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/raftmq/raftmq/broker"
	"github.com/raftmq/raftmq/clients"
	"github.com/raftmq/raftmq/transport"
)

// inProcessCluster is w.Brokers raftmq brokers in this process, each with
// an embedded NATS server; the servers are routed into one NATS cluster.
type inProcessCluster struct {
	brokers []*broker.Broker
}

// startRaftmqCluster starts the brokers with data under dir and waits until
// a controller leader sees every broker alive.
func startRaftmqCluster(ctx context.Context, dir string, w Workload) (raftmqCluster, error) {
	if w.Fsync != "always" {
		return nil, fmt.Errorf("bench: the in-process raftmq cluster always fsyncs; fsync %q is not available", w.Fsync)
	}
	routes := make([]string, w.Brokers)
	if w.Brokers > 1 {
		for i := range routes {
			port, err := freePort()
			if err != nil {
				return nil, err
			}
			routes[i] = "127.0.0.1:" + strconv.Itoa(port)
		}
	}
	var bootstrap []uint64
	for id := 1; id <= min(w.Brokers, 3); id++ {
		bootstrap = append(bootstrap, uint64(id))
	}
	c := &inProcessCluster{}
	for i := range w.Brokers {
		id := uint64(i + 1)
		cfg := broker.DefaultConfig()
		cfg.ID = id
		cfg.DataDir = filepath.Join(dir, "broker-"+strconv.Itoa(i+1))
		cfg.Bootstrap = bootstrap
		embedded := &transport.EmbeddedConfig{
			ServerName:   "raftmq-bench-" + strconv.Itoa(i+1),
			ClientListen: "127.0.0.1:0",
		}
		if w.Brokers > 1 {
			embedded.ClusterListen = routes[i]
			for j, route := range routes {
				if j != i {
					embedded.Routes = append(embedded.Routes, "nats://"+route)
				}
			}
		}
		cfg.NATS.Embedded = embedded
		b, err := broker.Start(ctx, cfg)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("bench: start broker %d: %w", id, err)
		}
		c.brokers = append(c.brokers, b)
	}
	if err := c.waitReady(ctx); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *inProcessCluster) urls() []string {
	urls := make([]string, len(c.brokers))
	for i, b := range c.brokers {
		urls[i] = b.ClientURL()
	}
	return urls
}

func (c *inProcessCluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client, err := clients.Connect(ctx, c.brokers[0].ClientURL(), clients.WithRequestTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer client.Close()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	last := "no answer"
	for {
		status, err := client.ClusterStatus(ctx)
		if err == nil {
			alive := 0
			for _, b := range status.Brokers {
				if b.Alive {
					alive++
				}
			}
			if status.ControllerLeader != 0 && alive == len(c.brokers) {
				return nil
			}
			last = fmt.Sprintf("controller leader %d, %d of %d brokers alive", status.ControllerLeader, alive, len(c.brokers))
		} else {
			last = err.Error()
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return fmt.Errorf("bench: raftmq cluster not ready (%s): %w", last, ctx.Err())
		}
	}
}

func (c *inProcessCluster) close() error {
	errs := make([]error, len(c.brokers))
	var wg sync.WaitGroup
	for i, b := range c.brokers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			errs[i] = b.Close(ctx)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
