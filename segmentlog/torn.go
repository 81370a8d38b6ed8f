package segmentlog

import (
	"fmt"

	"github.com/raftmq/raftmq/protocol"
)

// sectorSize is the granularity at which a write that did not reach the
// disk shows up after a crash: a page the file system never wrote reads as
// zeros. 512 bytes divides every page and sector size in use, so a lost
// 4 KiB page is also a run of lost 512-byte sectors.
const sectorSize = 512

// checkTornTail decides whether the first invalid frame of the active
// segment, found by a recovery scan, is a torn write that Open may cut, or
// corruption that it must report. Only data written after the last
// completed sync can be torn, and after a crash such data is a mix of what
// was written and zeros, in sector units, in any order. So the damage is a
// torn write only when it is explained by that: the file ends inside the
// frame, or part of the frame lies in a sector that reads as zeros from
// there to its end. Anything else (a frame complete in the file, failing its
// CRC, with no zeroed sector: a bit flip, say; or a frame that does not
// follow its predecessor) would mean synced entries are damaged, and
// cutting there could drop entries after it that were synced and
// acknowledged: that is ErrCorrupt, naming the file and position.
//
// The search for a valid frame beyond the damage (findFrameAfter) adds two
// checks: a header whose length runs over a valid later frame, or past the
// end of the file while valid frames follow, has a damaged length.
// Valid frames after a torn write do not make it corruption: unsynced pages
// reach the disk in any order, so later unsynced frames can survive a crash
// that lost an earlier one. They were never synced, so cutting them loses
// nothing acknowledged.
func checkTornTail(r *frameReader, res *scanResult) error {
	pos := res.state.pos // start of the bad frame
	nextIndex := res.state.nextIndex
	reason := res.stopReason
	switch res.badKind {
	case frameShortHeader:
		return nil // the file ends inside the header
	case frameSequence:
		return corruptf(r.path, pos, "%s", reason)
	}
	later, laterIndex, found, err := r.findFrameAfter(pos+1, nextIndex)
	if err != nil {
		return err
	}
	extentEnd := pos + frameHeaderSize
	if res.badKind == framePastEnd || res.badKind == frameBadBody {
		extentEnd = pos + frameHeaderSize + int64(res.badHeader.length)
		if found && later < extentEnd {
			return corruptf(r.path, pos, "%s; entry %d at byte %d lies inside the frame: its length is damaged",
				reason, laterIndex, later)
		}
		if extentEnd > r.limit {
			// The file ends inside the frame, as after a crash, unless the
			// length itself is damaged: a one-bit change that makes the
			// frame valid shows that.
			if length, ok, err := r.lengthBitFlip(pos, &res.badHeader); err != nil || ok {
				if err != nil {
					return err
				}
				return corruptf(r.path, pos, "%s; the entry is valid with length %d: its length is damaged", reason, length)
			}
			return nil
		}
		// A frame that ends in the zeros after the data (preallocated
		// space, see prealloc.go) is checked the same way: a torn frame
		// with one bit of its length changed does not become valid.
		if length, ok, err := r.lengthBitFlip(pos, &res.badHeader); err != nil || ok {
			if err != nil {
				return err
			}
			return corruptf(r.path, pos, "%s; the entry is valid with length %d: its length is damaged", reason, length)
		}
	}
	zeroed, err := r.hasZeroSector(pos, min(extentEnd, r.limit))
	if err != nil || zeroed {
		return err
	}
	if found {
		reason = fmt.Sprintf("%s; valid entry %d follows at byte %d", reason, laterIndex, later)
	}
	return corruptf(r.path, pos, "%s (not a torn write: no unwritten sector)", reason)
}

// hasZeroSector reports whether a sector overlapping [start, end) reads as
// zeros from max(start, sector start) to the sector's end or the end of
// data, as a sector the file system never wrote does.
func (r *frameReader) hasZeroSector(start, end int64) (bool, error) {
	for sector := start &^ (sectorSize - 1); sector < end; sector += sectorSize {
		from, to := max(start, sector), min(sector+sectorSize, r.limit)
		if from >= to {
			continue
		}
		b, err := r.window(from, int(to-from))
		if err != nil {
			return false, err
		}
		if isZero(b) {
			return true, nil
		}
	}
	return false, nil
}

// findFrameAfter looks for the first valid frame (header fields, CRC) at or
// after from whose index could follow the damage: at least minIndex and at
// most one more per frameHeaderSize bytes since from. Candidates are
// filtered on the index and the reserved bytes before any CRC is computed,
// so the search costs little more than reading the rest of the file, which
// happens only when recovery finds damage.
func (r *frameReader) findFrameAfter(from int64, minIndex uint64) (int64, uint64, bool, error) {
	const span = 1 << 20
	for base := from; base+frameHeaderSize <= r.limit; {
		n := int(min(span+frameHeaderSize, r.limit-base))
		b, err := r.window(base, n)
		if err != nil {
			return 0, 0, false, err
		}
		for i := 0; i+frameHeaderSize <= n; i++ {
			index := le.Uint64(b[i+8:])
			pos := base + int64(i)
			if index < minIndex || index-minIndex > uint64(pos-from)/frameHeaderSize+1 || !isZero(b[i+25:i+32]) {
				continue
			}
			h := readFrameHeader(b[i:])
			size := frameHeaderSize + int64(h.length)
			if checkFrameHeader(&h, r.maxEntry) != "" || pos+size > r.limit {
				continue
			}
			frame, err := r.window(pos, int(size))
			if err != nil {
				return 0, 0, false, err
			}
			if checkFrameBody(&h, frame) == "" {
				return pos, h.index, true, nil
			}
			if b, err = r.window(base, n); err != nil {
				return 0, 0, false, err
			}
		}
		base += int64(n - frameHeaderSize + 1)
	}
	return 0, 0, false, nil
}

// lengthBitFlip reports whether the frame at pos, whose header h claims a
// length that does not make a valid frame, is valid with one bit of its length
// changed, and which length that is.
func (r *frameReader) lengthBitFlip(pos int64, h *frameHeader) (uint32, bool, error) {
	for bit := range 32 {
		length := h.length ^ 1<<bit
		end := pos + frameHeaderSize + int64(length)
		if end > r.limit || int64(length) > int64(r.maxEntry) {
			continue
		}
		frame, err := r.window(pos, int(end-pos))
		if err != nil {
			return 0, false, err
		}
		var header [frameHeaderSize]byte
		copy(header[:], frame)
		le.PutUint32(header[4:], length)
		crc := protocol.UpdateCRC32C(protocol.CRC32C(header[4:]), frame[frameHeaderSize:])
		if crc == h.crc {
			return length, true, nil
		}
	}
	return 0, false, nil
}
