package segmentlog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Run: go test ./segmentlog -run '^$' -bench . -benchtime 3x
//
// BenchmarkAppendSync and BenchmarkBaselineFileWrite write the same bytes
// (frames of 1,000 entries per batch) to real files; the baseline with one
// os.File write of a pre-built batch and one fdatasync per batch, the best a
// writer of these bytes can do. SetBytes counts entry payload bytes.

const entriesPerSync = 1000

var benchSizes = []int{100, 1 << 10, 64 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// benchEntries returns entriesPerSync record batch entries of size bytes.
func benchEntries(size int) []protocol.Entry {
	entries := make([]protocol.Entry, entriesPerSync)
	for i := range entries {
		entries[i] = protocol.Entry{Term: 1, Type: protocol.EntryRecordBatch,
			Data: testBatch(10, size-protocol.BatchHeaderSize, uint64(i))}
	}
	return entries
}

func BenchmarkAppendSync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			l, err := Open(vfs.Default, b.TempDir(), DefaultOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			entries := benchEntries(size)
			b.SetBytes(int64(size * entriesPerSync))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				next := l.LastIndex() + 1
				for i := range entries {
					entries[i].Index = next + uint64(i)
				}
				if err := l.Append(entries); err != nil {
					b.Fatal(err)
				}
				if _, err := l.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBaselineFileWrite(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			batch := encodeFrames(benchEntries(size))
			b.SetBytes(int64(size * entriesPerSync))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := f.Write(batch); err != nil {
					b.Fatal(err)
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillLog appends about totalBytes of entries of entrySize bytes.
func fillLog(b *testing.B, l *Log, entrySize int, totalBytes int64) {
	entries := benchEntries(entrySize)
	for written := int64(0); written < totalBytes; written += int64(entrySize * len(entries)) {
		next := l.LastIndex() + 1
		for i := range entries {
			entries[i].Index = next + uint64(i)
		}
		if err := l.Append(entries); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := l.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRead reads 1 KiB entries 256 KiB at a time, from the tail cache
// and from disk (a log whose cache holds nothing).
func BenchmarkRead(b *testing.B) {
	for _, cached := range []bool{true, false} {
		name := map[bool]string{true: "tail-cache", false: "disk"}[cached]
		b.Run(name, func(b *testing.B) {
			opts := DefaultOptions()
			opts.TailCacheBytes = 0
			if cached {
				opts.TailCacheBytes = 64 << 20
			}
			l, err := Open(vfs.Default, b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			fillLog(b, l, 1<<10, 32<<20)
			first, last := l.FirstIndex(), l.LastIndex()
			const chunk = 256 << 10
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			next := first
			for b.Loop() {
				entries, err := l.Entries(next, last+1, chunk)
				if err != nil {
					b.Fatal(err)
				}
				next = entries[len(entries)-1].Index + 1
				if next > last-300 {
					next = first
				}
			}
		})
	}
}

// BenchmarkOpen1GiB measures recovery of a 1 GiB log (1 KiB entries), with
// its index files intact and with them deleted (rebuilt by scanning).
func BenchmarkOpen1GiB(b *testing.B) {
	dir := b.TempDir()
	l, err := Open(vfs.Default, dir, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	fillLog(b, l, 1<<10, 1<<30)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	for _, deleteIndexes := range []bool{false, true} {
		name := map[bool]string{false: "intact-indexes", true: "indexes-deleted"}[deleteIndexes]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(1 << 30)
			for b.Loop() {
				if deleteIndexes {
					b.StopTimer()
					names, _ := os.ReadDir(dir)
					for _, n := range names {
						if strings.HasSuffix(n.Name(), indexSuffix) {
							os.Remove(filepath.Join(dir, n.Name()))
						}
					}
					b.StartTimer()
				}
				l, err := Open(vfs.Default, dir, DefaultOptions())
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				l.Close()
				b.StartTimer()
			}
		})
	}
}
