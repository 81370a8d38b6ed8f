package clients

import (
	"context"
	"errors"
	"time"

	"github.com/raftmq/raftmq/protocol"
)

// Poll waits until records are available or ctx ends and returns up to
// WithMaxPollRecords of them, in offset order within each partition. A
// partition that fails for good (an unknown topic, an offset out of range
// without WithOffsetReset) yields a *PartitionError, after the records
// fetched before it. When ctx ends with nothing fetched, Poll returns
// ctx's error; when the consumer is closed, ErrClosed (Close ends a Poll
// that is waiting).
//
// The returned Records are the caller's. Poll allocates them (in chunks,
// not one by one); their Key and Value alias the fetched bytes when the
// batch was not compressed. PollEach hands out the same records without
// allocating.
func (c *Consumer) Poll(ctx context.Context) ([]*Record, error) {
	var collector recordCollector
	_, err := c.poll(ctx, collector.prepare, collector.add)
	return collector.records, err
}

// pollGenerations is Poll that also returns, for each record, the
// generation of the fetcher that fetched it (fetchFrom returned it).
func (c *Consumer) pollGenerations(ctx context.Context) ([]*Record, []uint64, error) {
	collector := recordCollector{keepGenerations: true}
	_, err := c.poll(ctx, collector.prepare, collector.add)
	return collector.records, collector.generations, err
}

// recordCollector builds Poll's result: Records allocated in chunks.
type recordCollector struct {
	records []*Record
	slab    []Record // the current chunk
	// generations, when keepGenerations, holds the fetcher generation of
	// each record.
	generations     []uint64
	keepGenerations bool
}

// prepare sizes the result for up to total records.
func (rc *recordCollector) prepare(total int) {
	rc.records = make([]*Record, 0, total)
	if rc.keepGenerations {
		rc.generations = make([]uint64, 0, total)
	}
}

// add appends a copy of r (and of its bytes when copyBytes), fetched by
// the fetcher of generation.
func (rc *recordCollector) add(r *Record, generation uint64, copyBytes bool) bool {
	if rc.keepGenerations {
		rc.generations = append(rc.generations, generation)
	}
	if len(rc.slab) == cap(rc.slab) { // a new chunk; earlier records keep theirs
		rc.slab = make([]Record, 0, max(min(cap(rc.records)-len(rc.records), recordChunk), 1))
	}
	rc.slab = append(rc.slab, *r)
	record := &rc.slab[len(rc.slab)-1]
	record.Headers = nil
	if copyBytes {
		record.Key, record.Value = cloneBytes(r.Key), cloneBytes(r.Value)
	}
	if len(r.Headers) > 0 {
		record.Headers = make([]Header, len(r.Headers))
		for i, header := range r.Headers {
			if copyBytes {
				header.Value = cloneBytes(header.Value)
			}
			record.Headers[i] = header
		}
	}
	rc.records = append(rc.records, record)
	return true
}

// recordChunk is how many Records Poll allocates at once: chunks rather
// than one slice per fetch keep each allocation small (one huge block of
// pointers costs the collector more than it saves).
const recordChunk = 128

// PollEach waits like Poll until records are available or ctx ends, then
// calls fn for each of them, up to WithMaxPollRecords, in offset order within
// each partition, from the calling goroutine. It returns how many records
// it handed to fn, and errors as Poll does.
//
// PollEach neither allocates nor copies per record: fn receives the same
// *Record each time, refilled, whose Key, Value and Headers point into the
// fetched bytes (or the decompression buffer). They are valid only until
// fn returns: copy what must outlive the call, and modify nothing. When fn
// returns false PollEach stops; the records not handed out yet stay for
// the next Poll or PollEach.
func (c *Consumer) PollEach(ctx context.Context, fn func(*Record) bool) (int, error) {
	return c.poll(ctx, nil, func(r *Record, _ uint64, _ bool) bool { return fn(r) })
}

// poll is Poll and PollEach: it waits for fetched records, calls prepare
// with (an upper bound of) how many it will hand out, then emit for each
// record in turn, with the generation of its fetcher. copyBytes says that
// the record's bytes live in the decompression buffer, which the next
// batch reuses.
func (c *Consumer) poll(ctx context.Context, prepare func(total int), emit func(r *Record, generation uint64, copyBytes bool) bool) (int, error) {
	for {
		n, err := c.pollOnce(ctx, prepare, emit)
		if n > 0 || err != nil || c.stops.Load() == c.takenStops {
			return n, err
		}
		// Every result taken went stale (Seek, Unassign) before a record
		// of it was handed out: wait on for records or ctx's end.
	}
}

// pollOnce is one round of poll: it waits for results, and hands out
// what it took of them.
func (c *Consumer) pollOnce(ctx context.Context, prepare func(total int), emit func(r *Record, generation uint64, copyBytes bool) bool) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if err := c.deferred; err != nil {
		c.deferred = nil
		c.mu.Unlock()
		return 0, err
	}
	var errs []error
	// A result received from a fetcher stopped (Seek, Unassign) before mu
	// is taken again is dropped: wait on for another.
	for len(c.buffered) == 0 && len(errs) == 0 {
		c.mu.Unlock()
		var result *fetchResult
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-c.closing:
			return 0, ErrClosed
		case result = <-c.results:
		}
		if c.testAfterReceive != nil {
			c.testAfterReceive()
		}
		c.mu.Lock()
		c.acceptLocked(result, &errs)
	}
	for c.bufferedRecordsLocked() < c.config.maxPollRecords {
		select {
		case result := <-c.results:
			c.acceptLocked(result, &errs)
			continue
		default:
		}
		break
	}
	// Hand out without holding mu: fn is the application's code and may
	// call Seek or Unassign. Only Poll and PollEach (one at a time) add to
	// buffered, so what is left goes back in front of it afterwards.
	results := c.buffered
	c.buffered = nil
	c.takenStops = c.stops.Load()
	c.mu.Unlock()
	if c.testBeforeHandOut != nil {
		c.testBeforeHandOut()
	}

	if prepare != nil {
		prepare(min(pendingRecords(results), c.config.maxPollRecords))
	}
	handedOut, decodeErr := c.handOut(results, emit)

	c.mu.Lock()
	defer c.mu.Unlock()
	kept := results[:0]
	for _, result := range results {
		if result.pending > 0 && c.currentLocked(result) {
			kept = append(kept, result)
		}
	}
	c.buffered = append(kept, c.buffered...)
	if decodeErr != nil {
		// verifyFetched checked every batch, so this is a broken invariant
		// rather than bad data; report it and stop the partition anyway.
		if fetcher := c.partitions[decodeErr.tp]; fetcher != nil && fetcher.generation == decodeErr.generation {
			c.stopLocked(decodeErr.tp)
		}
		errs = append(errs, &PartitionError{Topic: decodeErr.tp.topic, Partition: decodeErr.tp.partition, Err: decodeErr.err})
	}
	err := errors.Join(errs...)
	if err != nil && handedOut > 0 {
		c.deferred, err = err, nil
	}
	return handedOut, err
}

// currentLocked reports whether result's fetcher still runs: its
// partition was not stopped (Seek, Unassign, Close) since the fetch.
func (c *Consumer) currentLocked(result *fetchResult) bool {
	fetcher := c.partitions[result.tp]
	return fetcher != nil && fetcher.generation == result.generation
}

// acceptLocked keeps a fetch result if its fetcher is still current.
func (c *Consumer) acceptLocked(result *fetchResult, errs *[]error) {
	if !c.currentLocked(result) {
		return // from before a Seek or Unassign
	}
	if result.err != nil {
		*errs = append(*errs, &PartitionError{Topic: result.tp.topic, Partition: result.tp.partition, Err: result.err})
		return
	}
	c.buffered = append(c.buffered, result)
}

func (c *Consumer) bufferedRecordsLocked() int { return pendingRecords(c.buffered) }

func pendingRecords(results []*fetchResult) int {
	n := 0
	for _, result := range results {
		n += result.pending
	}
	return n
}

// handOut decodes records of results in order and passes each to emit,
// until max poll records were handed out or emit returns false. It advances
// each result past what it handed out, and empties a result whose
// partition was stopped meanwhile (by emit or another goroutine: Seek,
// Unassign, Close drop the records not yet returned). A decode error (a
// batch that verifyFetched accepted) ends it; the failed result is emptied.
func (c *Consumer) handOut(results []*fetchResult, emit func(*Record, uint64, bool) bool) (int, *fetchResult) {
	handedOut, limit := 0, c.config.maxPollRecords
	record := &c.record
	for _, result := range results {
		checked := c.takenStops // result was current then
		for len(result.batches) > 0 && result.pending > 0 {
			if handedOut == limit {
				return handedOut, nil
			}
			n, more, err := c.handOutBatch(result, record, limit-handedOut, &checked, emit)
			handedOut += n
			if err != nil {
				result.batches, result.pending, result.err = nil, 0, err
				return handedOut, result
			}
			if !more {
				return handedOut, nil
			}
		}
	}
	return handedOut, nil
}

// handOutBatch hands out up to limit records of result's first batch, from
// result.offset on, and drops the batch once all its records are out. more
// is false when emit asked to stop. A batch left part way keeps its
// iterator (result.cursor) for the next call. checked is the stop count
// (Consumer.stops) at which result was last known current; once the
// partition is found stopped, result is emptied.
func (c *Consumer) handOutBatch(result *fetchResult, record *Record, limit int, checked *uint64, emit func(*Record, uint64, bool) bool) (n int, more bool, err error) {
	batch, h, err := nextBatch(result.batches)
	if err != nil {
		return 0, false, err
	}
	if h.RecordCount == 0 || h.LastOffset() < result.offset {
		result.batches = result.batches[len(batch):]
		return 0, true, nil
	}
	iterator := result.cursor
	result.cursor = nil
	if iterator == nil {
		iterator = c.takeIterator()
		// verifyFetched checked the batch's CRC, and the fetcher's bytes
		// have not changed since: no second pass over them.
		if err := iterator.ResetVerified(batch); err != nil {
			return 0, false, err
		}
	}
	copyBytes := h.Codec != protocol.CodecNone
	more, exhausted := true, false
	for n < limit {
		if stops := c.stops.Load(); stops != *checked {
			*checked = stops
			c.mu.Lock()
			current := c.currentLocked(result)
			c.mu.Unlock()
			if !current {
				c.iterators = append(c.iterators, iterator)
				result.batches, result.pending = nil, 0
				return n, true, nil
			}
		}
		if !iterator.NextPlain() {
			exhausted = true
			break
		}
		r := iterator.RecordRef()
		if r.Offset < result.offset {
			continue
		}
		record.Topic, record.Partition, record.Offset = result.tp.topic, result.tp.partition, r.Offset
		record.Key, record.Value, record.Timestamp = r.Key, r.Value, time.UnixMilli(r.Timestamp)
		record.Headers = record.Headers[:0]
		for _, header := range r.Headers {
			record.Headers = append(record.Headers, Header{Key: header.Key, Value: header.Value})
		}
		result.offset = r.Offset + 1
		result.pending--
		n++
		if !emit(record, result.generation, copyBytes) {
			more = false
			break
		}
	}
	if err := iterator.Err(); err != nil {
		return n, false, err
	}
	if exhausted || result.offset > h.LastOffset() {
		c.iterators = append(c.iterators, iterator)
		result.batches = result.batches[len(batch):]
		if len(result.batches) == 0 {
			result.pending = 0
		}
	} else {
		result.cursor = iterator
	}
	return n, more, nil
}

// takeIterator returns a free record iterator, reusing one (and its
// decompression buffer) when it can.
func (c *Consumer) takeIterator() *protocol.RecordIterator {
	if n := len(c.iterators); n > 0 {
		iterator := c.iterators[n-1]
		c.iterators = c.iterators[:n-1]
		return iterator
	}
	return new(protocol.RecordIterator)
}
