package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// isTerminal reports whether a standard stream (an io.Reader or io.Writer)
// is a character device (a terminal).
func isTerminal(stream any) bool {
	file, ok := stream.(*os.File)
	if !ok {
		return false
	}
	info, err := file.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

// progressBar redraws one line on a terminal with the progress of a long
// operation until stop.
type progressBar struct {
	out   io.Writer
	total int
	done  func() int
	start time.Time
	quit  chan struct{}
	wait  sync.WaitGroup
}

func startProgressBar(out io.Writer, total int, done func() int) *progressBar {
	bar := &progressBar{out: out, total: total, done: done, start: time.Now(), quit: make(chan struct{})}
	bar.wait.Add(1)
	go func() {
		defer bar.wait.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-bar.quit:
				bar.draw()
				fmt.Fprintln(bar.out)
				return
			case <-tick.C:
				bar.draw()
			}
		}
	}()
	return bar
}

func (bar *progressBar) draw() {
	fmt.Fprint(bar.out, "\r"+progressLine(bar.done(), bar.total, time.Since(bar.start)))
}

// progressLine renders "[=====>    ]  45% 450000/1000000 records, 123456/s".
func progressLine(done, total int, elapsed time.Duration) string {
	const width = 30
	fraction := 0.0
	if total > 0 {
		fraction = min(float64(done)/float64(total), 1)
	}
	filled := int(fraction * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	rate := 0.0
	if seconds := elapsed.Seconds(); seconds > 0 {
		rate = float64(done) / seconds
	}
	return fmt.Sprintf("[%s] %3.0f%% %d/%d records, %.0f/s ", bar, fraction*100, done, total, rate)
}

// stop draws the final state and ends the line; a nil bar does nothing.
func (bar *progressBar) stop() {
	if bar == nil {
		return
	}
	close(bar.quit)
	bar.wait.Wait()
}
