package bench

import "time"

// clock measures monotonic nanoseconds since the run began; payloads carry
// its readings, so producers and consumers in this process compare them.
type clock struct{ base time.Time }

func newClock() clock { return clock{base: time.Now()} }

func (c clock) now() int64 { return int64(time.Since(c.base)) }
