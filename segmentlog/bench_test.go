package segmentlog

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/raftmq/raftmq/protocol"
)

// Run: go test ./segmentlog -run '^$' -bench . -benchtime 3x
//
// BenchmarkAppendSync and BenchmarkBaselineFileWrite write the same bytes
// (frames of 1,000 entries per batch) to real files; the baseline with
// os.File writes of a pre-built batch (in pieces of the log's write buffer
// size, as the log writes) and one fdatasync per batch, the best a writer
// of these bytes can do. SetBytes counts entry payload bytes. The log is
// measured in its steady state (warmUp). On a shared machine compare with
// BenchmarkAppendSyncVsBaseline, which interleaves the two.

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
			warmUp(b, l, entries, nil)
			b.SetBytes(int64(size * entriesPerSync))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				appendSync(b, l, entries)
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
				writeBaseline(b, f, batch)
			}
		})
	}
}

// writeBaseline writes batch to f with plain writes of at most the log's
// write buffer size, then fdatasyncs f.
func writeBaseline(b *testing.B, f *os.File, batch []byte) {
	step := DefaultOptions().WriteBufferBytes
	for p := 0; p < len(batch); p += step {
		if _, err := f.Write(batch[p:min(p+step, len(batch))]); err != nil {
			b.Fatal(err)
		}
	}
	if err := fdatasyncFile(f); err != nil {
		b.Fatal(err)
	}
}

// warmUp appends and syncs batches until the log's tail cache is full and
// its append chunks are being reused, the steady state of a running log
// (filling the cache allocates its chunks once), and writes as many bytes
// to the baseline file f, if any, so both files have the same size.
// appendNext numbers entries to follow the log's last index and appends
// them.
func appendNext(b *testing.B, l *Log, entries []protocol.Entry) {
	next := l.LastIndex() + 1
	for i := range entries {
		entries[i].Index = next + uint64(i)
	}
	if err := l.Append(entries); err != nil {
		b.Fatal(err)
	}
}

// appendSync is appendNext followed by a Sync.
func appendSync(b *testing.B, l *Log, entries []protocol.Entry) {
	appendNext(b, l, entries)
	if _, err := l.Sync(); err != nil {
		b.Fatal(err)
	}
}

// openVsBaseline opens a log on fs and a plain baseline file side by side
// in a temporary directory, makes the benchmark's 1,000 entries of size
// bytes and their frames as the baseline writes them, and warms both up
// (warmUp). The log closes when the benchmark ends; the caller closes the
// baseline file, which boundDisk may replace.
func openVsBaseline(b *testing.B, fs vfs.FS, size int) (*Log, *os.File, []protocol.Entry, []byte) {
	b.Helper()
	dir := b.TempDir()
	l, err := Open(fs, filepath.Join(dir, "log"), DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	f, err := os.Create(filepath.Join(dir, "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	entries := benchEntries(size)
	batch := encodeFrames(entries)
	warmUp(b, l, entries, f)
	return l, f, entries, batch
}

func warmUp(b *testing.B, l *Log, entries []protocol.Entry, f *os.File) {
	opts := DefaultOptions()
	batchBytes := 0
	for _, e := range entries {
		batchBytes += frameHeaderSize + len(e.Data)
	}
	batch := encodeFrames(entries)
	for written := 0; written < opts.TailCacheBytes+4*opts.WriteBufferBytes; written += batchBytes {
		appendSync(b, l, entries)
		if f != nil {
			if _, err := f.Write(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAppendSyncVsBaseline interleaves the two benchmarks above batch
// by batch (alternating which goes first), so both see the same load on a
// shared machine. Both write the same bytes with one fdatasync per batch;
// the log also rolls a segment every SegmentMaxBytes (a roll syncs the old
// segment, the new segment's header and the directory), reported as
// rolls/batch. Between pairs of batches, untimed, boundDisk deletes what
// the next batches do not need. Metrics, one line per size:
//
//	ratio-%          the log's MB/s as a percentage of the baseline's (total
//	                 times): the target is >= 90
//	median-ratio-%   the median of the per-batch ratios, robust to bursts
//	                 of load from other processes
//	log-MB/s, baseline-MB/s
//	log-cpu-us/batch, baseline-cpu-us/batch   CPU time (user+system) per
//	                 batch, which neighbours on a shared machine hardly move
//
// Allocations are the log's (the baseline allocates nothing); allocs/op is
// per 1,000 entries.
func BenchmarkAppendSyncVsBaseline(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			l, f, entries, batch := openVsBaseline(b, vfs.Default, size)
			defer func() { f.Close() }()
			var logCPU, baselineCPU time.Duration
			rolls := 0
			logBatch := func() time.Duration {
				active := l.active()
				cpu := processCPU()
				defer func() {
					logCPU += processCPU() - cpu
					if l.active() != active {
						rolls++
					}
				}()
				start := time.Now()
				appendSync(b, l, entries)
				return time.Since(start)
			}
			baselineBatch := func() time.Duration {
				cpu := processCPU()
				defer func() { baselineCPU += processCPU() - cpu }()
				start := time.Now()
				writeBaseline(b, f, batch)
				return time.Since(start)
			}
			var logTotal, baselineTotal time.Duration
			var ratios []float64
			// Collect the setup's garbage (the 64 MiB batches) now, not
			// during the first timed batches, whose CPU time counts every
			// thread of the process.
			runtime.GC()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var logTime, baselineTime time.Duration
				if i%2 == 0 {
					logTime = logBatch()
					baselineTime = baselineBatch()
				} else {
					baselineTime = baselineBatch()
					logTime = logBatch()
				}
				logTotal += logTime
				baselineTotal += baselineTime
				ratios = append(ratios, float64(baselineTime)/float64(logTime))
				f = boundDisk(b, l, f)
			}
			bytes := float64(size * entriesPerSync * b.N)
			slices.Sort(ratios)
			b.ReportMetric(bytes/logTotal.Seconds()/1e6, "log-MB/s")
			b.ReportMetric(bytes/baselineTotal.Seconds()/1e6, "baseline-MB/s")
			b.ReportMetric(100*float64(baselineTotal)/float64(logTotal), "ratio-%")
			b.ReportMetric(100*ratios[len(ratios)/2], "median-ratio-%")
			b.ReportMetric(float64(logCPU.Microseconds())/float64(b.N), "log-cpu-us/batch")
			b.ReportMetric(float64(baselineCPU.Microseconds())/float64(b.N), "baseline-cpu-us/batch")
			b.ReportMetric(float64(rolls)/float64(b.N), "rolls/batch")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// boundDisk keeps what the interleaved benchmark leaves on disk to about
// two segments per side (300 batches of 64 KiB entries would otherwise
// take 40 GB): untimed, it deletes the log's sealed segments and, once the
// baseline file is SegmentMaxBytes long, replaces it with a new empty file.
// Both sides go on writing fresh blocks at the end of a file, as before;
// the deletions' journal updates fall on whichever side syncs next, which
// alternates.
func boundDisk(b *testing.B, l *Log, f *os.File) *os.File {
	if _, err := l.DeleteBefore(l.LastIndex() + 1); err != nil {
		b.Fatal(err)
	}
	info, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	if info.Size() < DefaultOptions().SegmentMaxBytes {
		return f
	}
	name := f.Name()
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		b.Fatal(err)
	}
	f, err = os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// fillLog appends about totalBytes of entries of entrySize bytes.
func fillLog(b *testing.B, l *Log, entrySize int, totalBytes int64) {
	entries := benchEntries(entrySize)
	for written := int64(0); written < totalBytes; written += int64(entrySize * len(entries)) {
		appendNext(b, l, entries)
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

// BenchmarkReadBatches reads record batches of 1 KiB by offset, 256 KiB
// per call into a reused buffer, from the tail cache and from disk.
func BenchmarkReadBatches(b *testing.B) {
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
			first, end, last := l.FirstOffset(), l.NextOffset(), l.LastIndex()
			const chunk = 256 << 10
			buf := make([]byte, 0, 2*chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			next := first
			for b.Loop() {
				out, after, err := l.ReadBatches(buf[:0], next, last, chunk)
				if err != nil || len(out) == 0 {
					b.Fatal(len(out), err)
				}
				next = after
				if next > end-3000 {
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

// BenchmarkAppendCPU measures what the log itself costs per entry, without
// the disk: Append and Sync of 1,000 entries per batch over a file system
// that drops frame writes (positional writes) and syncs nothing. ns/entry
// is the log's CPU per appended entry: framing (copy, stamp, CRC32C), the
// tail cache and index updates, the hand-off to the file.
func BenchmarkAppendCPU(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			l, err := Open(dropWritesFS{vfs.NewMem()}, "", DefaultOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			entries := benchEntries(size)
			warmUp(b, l, entries, nil)
			b.SetBytes(int64(size * entriesPerSync))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for b.Loop() {
				appendSync(b, l, entries)
			}
			cpu = processCPU() - cpu
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*entriesPerSync), "cpu-ns/entry")
		})
	}
}

// dropWritesFS is an in-memory file system whose files drop positional
// writes (the log writes frames with WriteAt and headers with Write) and
// whose index files drop every write, so a benchmark measures the log's
// CPU and not the copying of the file system (an in-memory file regrows
// its buffer as it is written, which for the 2 MiB index file of a segment
// of 1 KiB entries cost more than the encoding).
type dropWritesFS struct{ vfs.FS }

type dropWritesFile struct{ vfs.File }

func (f dropWritesFile) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

type dropAllWritesFile struct{ dropWritesFile }

func (f dropAllWritesFile) Write(p []byte) (int, error) { return len(p), nil }

func (fs dropWritesFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(name, indexSuffix+tempSuffix) {
		return dropAllWritesFile{dropWritesFile{f}}, nil
	}
	return dropWritesFile{f}, nil
}

func (fs dropWritesFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return dropWritesFile{f}, nil
}

// processCPU is the CPU time (user and system) the process has used: on a
// shared machine it measures work where wall time measures the neighbours.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
