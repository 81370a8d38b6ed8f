package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress shows how far a run is. The driver calls Begin, adds to Counter
// from any goroutine, and calls End; one phase at a time.
type Progress interface {
	Begin(label string, total int64)
	// Counter is the current phase's count of records done.
	Counter() *atomic.Int64
	End()
}

// NoProgress discards progress.
type NoProgress struct{ counter atomic.Int64 }

func (p *NoProgress) Begin(string, int64)    {}
func (p *NoProgress) Counter() *atomic.Int64 { return &p.counter }
func (p *NoProgress) End()                   {}

// Bar draws a progress bar on a terminal, redrawing a single line.
type Bar struct {
	out     io.Writer
	mu      sync.Mutex
	counter atomic.Int64
	stop    chan struct{}
	stopped chan struct{}
}

// NewProgress returns a Bar on out when out is a terminal, and a
// NoProgress otherwise.
func NewProgress(out *os.File) Progress {
	if out == nil || !isTerminal(out) {
		return &NoProgress{}
	}
	return &Bar{out: out}
}

func isTerminal(f *os.File) bool {
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

func (b *Bar) Counter() *atomic.Int64 { return &b.counter }

func (b *Bar) Begin(label string, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.counter.Store(0)
	b.stop, b.stopped = make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(b.stopped)
		ticker := time.NewTicker(200 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				fmt.Fprint(b.out, "\r"+renderBar(label, b.counter.Load(), total, time.Since(start)))
			case <-b.stop:
				fmt.Fprint(b.out, "\r"+renderBar(label, b.counter.Load(), total, time.Since(start))+"\n")
				return
			}
		}
	}()
}

func (b *Bar) End() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop != nil {
		close(b.stop)
		<-b.stopped
		b.stop = nil
	}
}

// renderBar formats one progress line: label, bar, count and rate.
func renderBar(label string, done, total int64, elapsed time.Duration) string {
	const width = 30
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	if total <= 0 {
		return fmt.Sprintf("%-40s %12d records %10.0f/s", label, done, rate)
	}
	filled := int(min(done, total) * width / total)
	return fmt.Sprintf("%-40s [%s%s] %3d%% %10.0f/s", label,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), min(done, total)*100/total, rate)
}
