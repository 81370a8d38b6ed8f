package segmentlog

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Preallocation. An fdatasync that finds the file's size changed must
// also commit the inode (on ext4 a journal commit), so a small append
// that grows the file syncs slower than one written into space the file
// already has. The active segment is therefore extended ahead of its data
// in steps of Options.PreallocateBytes, with a size-extending fallocate
// (mode 0: the file's size grows and the new space reads as zeros), and
// most Syncs write below the file's size. The space after the last frame
// reads as zeros, which the format already reads as the end of data (see
// the package documentation, Segment format and Recovery). A roll cuts a
// sealed segment to its data, durably, before the next segment is created.
//
// Files without a descriptor (the in-memory and error-injecting file
// systems of tests) are extended by writing zeros (at most maxZeroFill
// ahead), so the crash and error tests run over zero tails; they cannot
// be cut, so their sealed segments keep their zero tails, which Open
// accepts. Where fallocate is not supported, the log appends without
// preallocation, silently. Only small Syncs gain (preallocMaxSyncBytes).

// preallocMaxSyncBytes: when Syncs write more than this on average, the
// log does not extend the file ahead (it appends). The gain of
// preallocating comes from Syncs that write into a block an earlier Sync
// already wrote: writing into preallocated (unwritten) space, the first
// write to a block converts it to written, a metadata change the
// fdatasync must commit as it must commit a size change. Syncs of a few
// hundred bytes mostly find their block converted; Syncs of many blocks
// convert new blocks every time, and measured no better, or worse, than
// appending (see the package documentation, Preallocation).
const preallocMaxSyncBytes = 16 << 10

// noteSyncBytes records that a Sync is about to sync the active file up to
// end: an average (weight 1/8) of the bytes each Sync writes. syncMu is
// held.
func (l *Log) noteSyncBytes(end int64) {
	n := max(end-l.syncedEnd, 0)
	l.syncedEnd = end
	avg := l.syncBytes.Load()
	l.syncBytes.Store(avg - avg/8 + n/8)
}

// allocStep is what one preallocation step adds at least: the file is
// extended to a whole number of these beyond the data being written.
const allocStep = 4 << 10

// zeroPiece is written, piece by piece, to extend files without a
// descriptor. It is never modified (the file system must not modify
// buffers passed to WriteAt, see the package documentation).
var zeroPiece [64 << 10]byte

// maxZeroFill bounds the step on files without a descriptor, where
// preallocating writes zeros: tests of other packages open many logs on
// the in-memory file system, which would otherwise hold PreallocateBytes
// of zeros per log, and copy them at every crash clone.
const maxZeroFill = 64 << 10

// allocTarget returns the size to extend the active file f (nil: a file
// with a descriptor) to before data up to end is written to it, or 0 when
// it need not grow: PreallocateBytes beyond end (at most maxZeroFill on a
// file without a descriptor), rounded up to allocStep, but not past
// SegmentMaxBytes (a segment rolls there; an entry too large for a segment
// is not preallocated for).
func (l *Log) allocTarget(end, allocEnd int64, f vfs.File) int64 {
	step := l.opts.PreallocateBytes
	if step == 0 || l.noFallocate || end <= allocEnd {
		return 0
	}
	if f != nil && f.Fd() == vfs.InvalidFd {
		step = min(step, maxZeroFill)
	} else if l.syncBytes.Load() > preallocMaxSyncBytes {
		return 0
	}
	target := min((end+step+allocStep-1)&^(allocStep-1), l.opts.SegmentMaxBytes)
	if target <= end || target <= allocEnd {
		return 0
	}
	return target
}

// extendFile grows f, whose size is size, to target: by fallocate when f
// has a descriptor, else by writing zeros. It returns the file's size
// afterwards. Only a failed write of zeros is an error (the caller's write
// would fail the same way); a fallocate that is not supported switches
// preallocation off for the log, and one that fails otherwise (out of
// space, say) is left to the data write, with the size read again in case
// part of the range was allocated.
func (l *Log) extendFile(f vfs.File, path string, size, target int64) (int64, error) {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		err := fallocate(fd, size, target-size)
		switch {
		case err == nil:
			return target, nil
		case errors.Is(err, errors.ErrUnsupported):
			l.noFallocate = true
			return size, nil
		}
		info, serr := f.Stat()
		if serr != nil {
			return 0, fmt.Errorf("segmentlog: stat %s: %w", path, serr)
		}
		return max(size, info.Size()), nil
	}
	for pos := size; pos < target; {
		n := min(int64(len(zeroPiece)), target-pos)
		if _, err := f.WriteAt(zeroPiece[:n], pos); err != nil {
			return 0, fmt.Errorf("segmentlog: preallocate %s: %w", path, err)
		}
		pos += n
	}
	return target, nil
}

// writeActive writes b at pos of the active segment's file (file, at
// path), extending the file ahead first (see allocTarget). flushMu must be held (or the caller is
// the writer with the log not yet shared).
func (l *Log) writeActive(file vfs.File, path string, b []byte, pos int64) error {
	end := pos + int64(len(b))
	if err := l.extendAhead(file, path, end); err != nil {
		return err
	}
	if _, err := file.WriteAt(b, pos); err != nil {
		return fmt.Errorf("segmentlog: write %s: %w", path, err)
	}
	l.allocEnd = max(l.allocEnd, end)
	return l.startWriteback(file, path, end)
}

// extendAhead extends the active segment's file (file, at path) ahead of
// a write that ends at end, when allocTarget says so. flushMu must be held
// (or the caller is the writer with the log not yet shared).
func (l *Log) extendAhead(file vfs.File, path string, end int64) error {
	if target := l.allocTarget(end, l.allocEnd, file); target > 0 {
		size, err := l.extendFile(file, path, l.allocEnd, target)
		if err != nil {
			return err
		}
		l.allocEnd = size
	}
	return nil
}

// cutPreallocated cuts the active segment's file to its data, end, before
// it is sealed, and reports whether it did (the caller syncs the cut).
// Files without a descriptor keep their zero tail.
func (l *Log) cutPreallocated(end int64) (bool, error) {
	if l.allocEnd <= end {
		return false, nil
	}
	fd := l.writeFile.Fd()
	if fd == vfs.InvalidFd {
		return false, nil
	}
	if err := ftruncate(fd, end); err != nil {
		return false, fmt.Errorf("segmentlog: cut %s to %d bytes: %w", l.active().path, end, err)
	}
	l.allocEnd = end
	return true, nil
}
