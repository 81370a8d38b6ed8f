package segmentlog

import (
	"sync/atomic"

	"github.com/raftmq/raftmq/protocol"
)

// The tail cache and the append chunks.
//
// Append frames entries into an append chunk, a buffer of
// Options.WriteBufferBytes that is written to the active segment file when
// it is full and at every Sync. The tail cache is a ring of descriptors of
// the most recent entries whose data aliases those chunks, so a recent
// entry is held in memory once, as its frame. Chunks are reused: once every
// entry framed in a chunk has been evicted from the cache (and the chunk
// written to the file), the chunk goes to a small free list and the next
// Append writes over it. Reused memory has no page faults and gives the
// garbage collector nothing to do, which is what keeps Append+Sync near the
// speed of plain file writes.
//
// Lifetime rule: a chunk's bytes are written only by the writer goroutine,
// past what it has published, and a published frame is never written
// again while any reader can reach it. Readers read chunk bytes only while
// they hold Log.mu (read-locked) and the entry is in the cache. Entries
// hands out Data that aliases a chunk (no copy) and marks the chunk lent;
// ReadBatches copies. A lent chunk is never reused: once no cached entry
// uses it, it is dropped and the garbage collector frees it when the last
// returned entry goes, so returned Data stays valid and unchanged forever.
// Eviction, and so recycling, takes Log.mu write-locked, so a reader that
// marks a chunk lent has done so before the recycler looks at the mark.
// A log nobody reads through Entries (a follower whose leader reads its
// own log, the append benchmarks) reuses all its chunks; a log whose
// recent entries are read allocates about one chunk per WriteBufferBytes
// appended, instead of a copy per read.

// appendChunk is an append buffer; tail cache entries alias its bytes.
type appendChunk struct {
	buf       []byte
	lastIndex uint64      // last index framed in buf; 0 when none
	lent      atomic.Bool // Entries returned Data aliasing buf: never reuse it
}

// lend marks the chunk as aliased by returned entries.
func (c *appendChunk) lend() {
	if !c.lent.Load() {
		c.lent.Store(true)
	}
}

// cachedEntry describes a cached entry; its index is implied by its place
// in the cache. Its payload is chunk.buf[off:off+length] of the chunk with
// sequence number chunkSeq (see Log.cachedData). It holds no pointer, so
// the cache ring costs the garbage collector nothing and filling it takes
// no write barriers.
type cachedEntry struct {
	term        uint64
	baseOffset  uint64 // the log's next record offset before this entry
	chunkSeq    uint64
	off         uint32
	length      uint32
	recordCount uint32
	crc         uint32 // the frame's CRC
	typ         protocol.EntryType
}

func (c *cachedEntry) frameSize() int { return frameHeaderSize + int(c.length) }

// cachedData returns the payload of a cached entry, to be copied before
// Log.mu is released (see lentData). Log.mu must be held.
func (l *Log) cachedData(c *cachedEntry) []byte {
	return l.cachedChunk(c).data(c)
}

func (l *Log) cachedChunk(c *cachedEntry) *appendChunk { return l.chunks[c.chunkSeq-l.chunkBase] }

// data returns the payload of cached entry c, which chunk holds.
func (ch *appendChunk) data(c *cachedEntry) []byte {
	end := c.off + c.length
	return ch.buf[c.off:end:end]
}

// tailCache is a ring of the most recent entries, oldest first. Log.mu
// guards it, with one exception: the writer goroutine reads ring and next
// without it (see slot), which only the writer changes, under Log.mu.
// Eviction (evict), which other goroutines run (a Sync's flush), changes
// head, count and bytes only.
type tailCache struct {
	ring  []cachedEntry // power-of-two length, or nil
	head  int           // ring position of the oldest entry
	next  int           // ring position after the newest entry: head+count, wrapped
	count int
	bytes int // frame bytes of the cached entries
}

// at returns the i-th cached entry, 0 being the oldest.
func (c *tailCache) at(i int) *cachedEntry { return &c.ring[(c.head+i)&(len(c.ring)-1)] }

// slot returns the i-th ring slot after the newest entry. The writer fills
// the free slots it reserved (see Log.reserveCacheSlots) through it without
// Log.mu: eviction meanwhile frees slots at the other end only.
func (c *tailCache) slot(i int) *cachedEntry { return &c.ring[(c.next+i)&(len(c.ring)-1)] }

// add makes the n filled slots after the newest entry cached entries of
// frameBytes bytes in all. Log.mu must be held for writing.
func (c *tailCache) add(n, frameBytes int) {
	c.count += n
	c.bytes += frameBytes
	c.next = (c.next + n) & (len(c.ring) - 1)
}

// grow makes the ring hold at least n entries. Log.mu must be held for
// writing.
func (c *tailCache) grow(n int) {
	if n <= len(c.ring) {
		return
	}
	size := max(64, len(c.ring))
	for size < n {
		size *= 2
	}
	ring := make([]cachedEntry, size)
	for i := range c.count {
		ring[i] = *c.at(i)
	}
	c.ring, c.head, c.next = ring, 0, c.count
}

// evict drops the oldest entries, at most limit of them, until the cached
// frames take at most budget bytes, and returns how many it dropped. Their
// slots keep stale bytes: the ring holds no pointers, and slots outside
// the cached entries are never read.
func (c *tailCache) evict(budget, limit int) int {
	mask := len(c.ring) - 1
	head, bytes, n := c.head, c.bytes, 0
	for bytes > budget && n < limit {
		bytes -= frameHeaderSize + int(c.ring[head].length)
		head = (head + 1) & mask
		n++
	}
	c.head, c.bytes, c.count = head, bytes, c.count-n
	return n
}

// keep drops every entry but the n oldest.
func (c *tailCache) keep(n int) {
	for c.count > n {
		e := c.at(c.count - 1)
		c.bytes -= e.frameSize()
		*e = cachedEntry{}
		c.count--
	}
	if len(c.ring) > 0 {
		c.next = (c.head + c.count) & (len(c.ring) - 1)
	}
}

// maxFreeChunks bounds the free list when the cache is full: enough to
// absorb the chunks one eviction releases without holding memory the cache
// budget does not need. A cache below its budget may keep as many more
// free chunks as the budget has room for (freeChunkLimitLocked), so the
// chunks a write-through Append empties the cache of (see Log.Append) are
// there to take the call's last entries, not dropped and allocated again.
const maxFreeChunks = 2

// freeChunkLimitLocked is how many chunks the free list may hold.
func (l *Log) freeChunkLimitLocked() int {
	return maxFreeChunks + max(0, l.opts.TailCacheBytes-l.cache.bytes)/l.opts.WriteBufferBytes
}

// takeChunkLocked returns an empty chunk of at least size bytes, reused when
// one is free.
func (l *Log) takeChunkLocked(size int) *appendChunk {
	if n := len(l.freeChunks); n > 0 && len(l.freeChunks[n-1].buf) >= size {
		c := l.freeChunks[n-1]
		l.freeChunks[n-1] = nil
		l.freeChunks = l.freeChunks[:n-1]
		return c
	}
	return &appendChunk{buf: make([]byte, max(l.opts.WriteBufferBytes, size))}
}

// recycleChunksLocked moves chunks that no cached entry aliases any more to
// the free list. Chunks are in append order, so it stops at the first one
// still in use.
func (l *Log) recycleChunksLocked() {
	start := l.tailStartLocked()
	n := 0
	for n < len(l.chunks) && l.chunks[n] != l.chunk && l.chunks[n].lastIndex < start {
		c := l.chunks[n]
		c.lastIndex = 0
		if !c.lent.Load() && len(c.buf) == l.opts.WriteBufferBytes && len(l.freeChunks) < l.freeChunkLimitLocked() {
			l.freeChunks = append(l.freeChunks, c)
		}
		n++
	}
	if n > 0 {
		k := copy(l.chunks, l.chunks[n:])
		clear(l.chunks[k:])
		l.chunks = l.chunks[:k]
		l.chunkBase += uint64(n)
	}
}

// dropChunksLocked forgets the current chunk and recycles every chunk the
// cache no longer uses (after a truncation or reset).
func (l *Log) dropChunksLocked(lastKept uint64) {
	for _, c := range l.chunks {
		c.lastIndex = min(c.lastIndex, lastKept)
	}
	l.chunk, l.chunkUsed, l.chunkFlushed = nil, 0, 0
	l.recycleChunksLocked()
}
