package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with 3
// significant digits.
const (
	latencyLowestMicros  = 1
	latencyHighestMicros = int64(10 * time.Minute / time.Microsecond)
	latencySigFigs       = 3
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(latencyLowestMicros, latencyHighestMicros, latencySigFigs)
}

// recordLatency adds one latency; values outside the range are clamped so
// nothing is silently dropped.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	micros := d.Microseconds()
	if micros < latencyLowestMicros {
		micros = latencyLowestMicros
	}
	if micros > latencyHighestMicros {
		micros = latencyHighestMicros
	}
	_ = h.RecordValue(micros)
}

// LatencySummary is a latency distribution in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func summarizeLatency(h *hdrhistogram.Histogram) LatencySummary {
	if h == nil || h.TotalCount() == 0 {
		return LatencySummary{}
	}
	ms := func(micros int64) float64 { return float64(micros) / 1000 }
	return LatencySummary{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}
