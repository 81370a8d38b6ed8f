package segmentlog

import (
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Write-through by vector. The entries an Append call writes through (see
// writer.go) are not read again from memory: the tail cache does not hold
// them. Where the active file has a descriptor (vfs.Default) and the
// platform has pwritev, Append therefore does not copy their payloads at
// all. For each entry it builds the frame header, and for a record batch
// the stamped batch header after it, in a small reused stage buffer,
// computes the frame's CRC32C over those bytes and then over the rest of
// the caller's payload where it lies (a read-only pass), and describes the
// frame to the kernel as two pieces: the staged bytes, and the rest of the
// payload in the caller's memory. Payloads shorter than vecMinPieceBytes
// are copied into the stage with their header instead (framed as the
// copying path frames them), and adjacent staged bytes are one piece. A
// group of about vecGroupBytes of frames is written with one pwritev
// (short writes are continued), right after its CRCs were computed, so the
// kernel's copy into the page cache reads payload bytes that are still in
// the processor's cache. The file's bytes are exactly those the copying
// path writes. Nothing keeps a reference to the caller's bytes once the
// group is written: the pieces are cleared, and the entries are read back
// from the file. A failed write is sticky, like any failed write.
//
// Files without a descriptor (the in-memory and error-injecting file
// systems of tests) write through by copying, as before.

// vecGroupBytes is about how many frame bytes one pwritev writes. Each
// write call costs the kernel more than its copy (page cache and file
// system work per call), so larger groups cost less, as long as the CRC
// pass has left the group in the processor's caches. Thread CPU of the
// write calls per 64 MiB of 64 KiB pieces on the benchmark VM (ext4, a
// stand-alone probe, medians of 6 and of 8 rounds in two runs,
// 2026-11-23): plain writes of 1 MiB from memory 9.4 and 9.4 ms; pwritev
// right after the group's CRC pass, groups of 256 KiB 14.5 (first run),
// 512 KiB 9.5 and 9.6, 1 MiB 8.0 and 7.2, 2 MiB 6.6, 4 MiB 6.5 (second
// run); a copy into a 1 MiB chunk, then its write, 7.9 and 8.6 ms. In the interleaved benchmark 2 MiB
// measured better than 512 KiB and 4 MiB (see the package documentation).
const vecGroupBytes = 2 << 20

// vecMinPieceBytes is the shortest payload rest (after the staged batch
// header) passed to the kernel as a piece of its own; shorter payloads are
// copied into the stage.
const vecMinPieceBytes = 4 << 10

// vecStageBytes is the size of the stage buffer: frame headers, stamped
// batch headers and short payloads of one group. It holds at least one
// frame of a short payload.
const vecStageBytes = 64 << 10

// maxPieces is the most pieces one pwritev takes (Linux's IOV_MAX).
const maxPieces = 1024

// vecState is the write-through-by-vector state of a Log (writer goroutine
// only; the write itself under flushMu).
type vecState struct {
	stage     []byte   // reused; staged bytes of the pending group
	staged    int      // bytes of stage in use
	pieces    [][]byte // the pending group's pieces, in file order
	lastStage bool     // the last piece ends at stage[staged]
	iov       iovecs   // scratch of pwritev
	group     int      // frame bytes per pwritev; 0: vecGroupBytes (tests set less)
	minPiece  int      // shortest payload rest passed as a piece; 0: vecMinPieceBytes (tests set less)
	// writev writes pieces at pos (one pwritev); tests replace it to
	// inject errors and short writes. nil: pwritev.
	writev func(fd uintptr, pieces [][]byte, pos int64, iov *iovecs) (int, error)
}

// canWriteVector reports whether Append may write through by vector to the
// active file.
func (l *Log) canWriteVector() bool {
	return vectorWrites && !l.noVector && l.writeFile != nil && l.writeFile.Fd() != vfs.InvalidFd
}

// addStaged appends stage[at:end] to the pieces, extending the last piece
// when it ends at at.
func (v *vecState) addStaged(at, end int) {
	if v.lastStage {
		last := v.pieces[len(v.pieces)-1]
		v.pieces[len(v.pieces)-1] = last[:len(last)+end-at]
	} else {
		v.pieces = append(v.pieces, v.stage[at:end])
	}
	v.staged = end
	v.lastStage = true
}

// reset forgets the pending group, dropping the references to the
// caller's payloads.
func (v *vecState) reset() {
	clear(v.pieces)
	v.pieces = v.pieces[:0]
	v.staged = 0
	v.lastStage = false
}

// appendVector is appendOne for an entry Append writes through by vector:
// it frames the entry as pieces of the pending group (see above) and
// describes it in the next free slot of the tail cache ring; publishThrough
// writes the group.
func (l *Log) appendVector(e *protocol.Entry, batch *protocol.BatchSummary, rollFirst bool) error {
	size := frameHeaderSize + len(e.Data)
	active, err := l.activeFor(size, rollFirst)
	if err != nil {
		return err
	}
	head := 0
	if batch != nil {
		head = protocol.BatchHeaderSize
	}
	v := &l.vec
	group, minPiece := v.group, v.minPiece
	if group == 0 {
		group, minPiece = vecGroupBytes, vecMinPieceBytes
	}
	inline := len(e.Data)-head < max(minPiece, 1)
	staged := frameHeaderSize + head
	if inline {
		staged = size
	}
	if l.npending > 0 && (l.pendingBytes+size > group || len(v.pieces)+2 > maxPieces || len(v.stage)-v.staged < staged) {
		if err := l.publishThrough(); err != nil {
			return err
		}
	}
	if v.stage == nil {
		v.stage = make([]byte, vecStageBytes)
	}
	if l.npending == 0 {
		l.pendingMaxTime = active.maxTime
	}
	at := v.staged
	frame := v.stage[at : at+staged : at+staged]
	putFrameHeader(frame, len(e.Data), e.Index, e.Term, e.Type)
	c := l.cache.slot(l.npending)
	*c = cachedEntry{term: e.Term, typ: e.Type, baseOffset: l.nextOffset + l.pendingRecords, length: uint32(len(e.Data))}
	if inline {
		// As appendOne frames it.
		head = frameHead(len(e.Data))
	}
	copy(frame[frameHeaderSize:frameHeaderSize+head], e.Data[:head])
	if batch != nil {
		protocol.StampBatch(frame[frameHeaderSize:], c.baseOffset, batch.AppendTime)
		c.recordCount = batch.RecordCount
		l.pendingMaxTime = max(l.pendingMaxTime, batch.MaxTimestamp)
	}
	if inline {
		c.crc = copySealFrame(frame, e.Data, head)
		v.addStaged(at, at+staged)
	} else {
		rest := e.Data[head:]
		c.crc = crc32c(protocol.UpdateCRC32C(0, frame[4:]), rest)
		le.PutUint32(frame, c.crc)
		v.addStaged(at, at+staged)
		v.pieces = append(v.pieces, rest)
		v.lastStage = false
	}
	if pos := active.end + int64(l.pendingBytes); l.lastPointPos < 0 || pos-l.lastPointPos >= int64(l.opts.IndexIntervalBytes) {
		l.pendingPoints = append(l.pendingPoints, indexPoint{index: e.Index, pos: pos, offset: c.baseOffset, maxTime: l.pendingMaxTime})
		l.lastPointPos = pos
	}
	l.npending++
	l.pendingBytes += size
	l.pendingRecords += uint64(c.recordCount)
	return nil
}

// writeVector writes the pending group's pieces (l.pendingBytes in all) at
// pos of the active file, extending the file ahead first as writeActive
// does, and forgets the pieces. flushMu must be held.
func (l *Log) writeVector(file vfs.File, path string, pos int64) error {
	v := &l.vec
	defer v.reset()
	end := pos + int64(l.pendingBytes)
	if err := l.extendAhead(file, path, end); err != nil {
		return err
	}
	writev := v.writev
	if writev == nil {
		writev = pwritev
	}
	fd := file.Fd()
	pieces := v.pieces
	for len(pieces) > 0 {
		n, err := writev(fd, pieces, pos, &v.iov)
		if err == nil && n <= 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			return fmt.Errorf("segmentlog: write %s: %w", path, err)
		}
		pos += int64(n)
		// Skip what was written; the first piece left may be part-written.
		for n > 0 && len(pieces) > 0 && n >= len(pieces[0]) {
			n -= len(pieces[0])
			pieces = pieces[1:]
		}
		if n > 0 {
			if len(pieces) == 0 {
				return fmt.Errorf("segmentlog: write %s: pwritev reported %d bytes more than it was given", path, n)
			}
			pieces[0] = pieces[0][n:]
		}
	}
	l.allocEnd = max(l.allocEnd, end)
	return l.startWriteback(file, path, end)
}
