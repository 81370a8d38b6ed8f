package broker

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/transport"
)

// levelRecorder is a slog.Handler that keeps the level of every record
// with a given message.
type levelRecorder struct {
	msg    string
	mu     *sync.Mutex
	levels *[]slog.Level
}

func (h levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h levelRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h levelRecorder) WithGroup(string) slog.Handler            { return h }
func (h levelRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.mu.Lock()
		*h.levels = append(*h.levels, r.Level)
		h.mu.Unlock()
	}
	return nil
}

// TestMaxBatchBytesLoweredWarnsOnlyForAChosenValue: the default max batch
// bytes is lowered to fit one NATS message on every start, which is logged
// at info level; a value the operator set above what fits is a warning.
func TestMaxBatchBytesLoweredWarnsOnlyForAChosenValue(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes int
		want  slog.Level
	}{
		{"default", DefaultConfig().MaxBatchBytes, slog.LevelInfo},
		{"chosen", 4 << 20, slog.LevelWarn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var mu sync.Mutex
			var levels []slog.Level
			cfg := DefaultConfig()
			fastTimings(&cfg)
			cfg.DataDir = t.TempDir()
			cfg.NATS.Embedded = &transport.EmbeddedConfig{ClientListen: "127.0.0.1:0"}
			cfg.Registerer = prometheus.NewRegistry()
			cfg.MaxBatchBytes = tc.bytes
			cfg.Logger = slog.New(levelRecorder{msg: "max batch bytes lowered to fit the NATS max payload", mu: &mu, levels: &levels})
			b, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if len(levels) != 1 || levels[0] != tc.want {
				t.Fatalf("max batch bytes %d lowered to %d: logged at %v, want once at %v", tc.bytes, b.maxBatchBytes, levels, tc.want)
			}
		})
	}
}
