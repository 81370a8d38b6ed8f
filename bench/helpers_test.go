package bench

import "sync/atomic"

type nopCounter struct{ n atomic.Int64 }

func (c *nopCounter) counter() *atomic.Int64 { return &c.n }
