package broker

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/raftmq/raftmq/transport"
)

// logRecorder is a slog.Handler that keeps the level of every record, by
// message.
type logRecorder struct {
	mu     sync.Mutex
	levels map[string][]slog.Level
}

func newLogRecorder() *logRecorder { return &logRecorder{levels: map[string][]slog.Level{}} }

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels[r.Message] = append(h.levels[r.Message], r.Level)
	return nil
}

// logged returns the levels of the records with message msg so far.
func (h *logRecorder) logged(msg string) []slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.levels[msg])
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
			const msg = "max batch bytes lowered to fit the NATS max payload"
			recorder := newLogRecorder()
			cfg := DefaultConfig()
			fastTimings(&cfg)
			cfg.DataDir = t.TempDir()
			cfg.NATS.Embedded = &transport.EmbeddedConfig{ClientListen: "127.0.0.1:0"}
			cfg.Registerer = prometheus.NewRegistry()
			cfg.MaxBatchBytes = tc.bytes
			cfg.Logger = slog.New(recorder)
			b, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(context.Background())
			levels := recorder.logged(msg)
			if len(levels) != 1 || levels[0] != tc.want {
				t.Fatalf("max batch bytes %d lowered to %d: logged at %v, want once at %v", tc.bytes, b.maxBatchBytes, levels, tc.want)
			}
		})
	}
}
