package segmentlog

import (
	"runtime"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// BenchmarkAppendSyncSplit is BenchmarkAppendSyncVsBaseline with each
// side's CPU split by call, measured on the benchmark's own thread
// (CLOCK_THREAD_CPUTIME_ID; the goroutine is locked to it), so the file
// system's work can be compared like with like:
//
//	log-frame-us       Append's CPU less its writes: framing and bookkeeping
//	                   (and the pwritev calls of entries written through by
//	                   vector, which bypass the file's WriteAt: see vector.go)
//	log-write-us       the log's positional writes (in Append and Sync)
//	log-fdatasync-us   the log's fdatasync
//	base-write-us, base-fdatasync-us   the baseline's
//	log-other-us, base-other-us   CPU of the process's other threads (the
//	                   Go runtime's) while each side ran
//	log-fdatasync-wall-us, base-fdatasync-wall-us   wall time in fdatasync
//	log-wall-nosync-us, base-wall-nosync-us   wall time in the rest
//	ratio-%            as in BenchmarkAppendSyncVsBaseline
//
// all per batch of 1,000 entries. Run with -test.run '^$' -test.bench
// Split -test.benchtime 300x.
func BenchmarkAppendSyncSplit(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			calls := &callCPU{}
			l, f, entries, batch := openVsBaseline(b, callCPUFS{vfs.Default, calls}, size)
			defer func() { f.Close() }()
			*calls = callCPU{}
			var logAppend, logProcess, logThread, logWall time.Duration
			var baseWrite, baseSync, baseSyncWall, baseProcess, baseWall time.Duration
			logBatch := func() {
				process, thread, start := processCPU(), threadCPU(), time.Now()
				written := calls.write
				appendNext(b, l, entries)
				logAppend += threadCPU() - thread - (calls.write - written)
				if _, err := l.Sync(); err != nil {
					b.Fatal(err)
				}
				logWall += time.Since(start)
				logThread += threadCPU() - thread
				logProcess += processCPU() - process
			}
			baseBatch := func() {
				process, thread, start := processCPU(), threadCPU(), time.Now()
				step := DefaultOptions().WriteBufferBytes
				for p := 0; p < len(batch); p += step {
					if _, err := f.Write(batch[p:min(p+step, len(batch))]); err != nil {
						b.Fatal(err)
					}
				}
				written, syncStart := threadCPU(), time.Now()
				baseWrite += written - thread
				if err := fdatasyncFile(f); err != nil {
					b.Fatal(err)
				}
				baseSyncWall += time.Since(syncStart)
				synced := threadCPU()
				baseSync += synced - written
				baseWall += time.Since(start)
				baseProcess += processCPU() - process - (synced - thread)
			}
			runtime.GC()
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					logBatch()
					baseBatch()
				} else {
					baseBatch()
					logBatch()
				}
				f = boundDisk(b, l, f)
			}
			perBatch := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(b.N) }
			b.ReportMetric(perBatch(logAppend), "log-frame-us")
			b.ReportMetric(perBatch(calls.write), "log-write-us")
			b.ReportMetric(perBatch(calls.sync), "log-fdatasync-us")
			b.ReportMetric(perBatch(logProcess-logThread), "log-other-us")
			b.ReportMetric(perBatch(baseWrite), "base-write-us")
			b.ReportMetric(perBatch(baseSync), "base-fdatasync-us")
			b.ReportMetric(perBatch(baseProcess), "base-other-us")
			b.ReportMetric(perBatch(logWall-calls.syncWall), "log-wall-nosync-us")
			b.ReportMetric(perBatch(baseWall-baseSyncWall), "base-wall-nosync-us")
			b.ReportMetric(perBatch(calls.syncWall), "log-fdatasync-wall-us")
			b.ReportMetric(perBatch(baseSyncWall), "base-fdatasync-wall-us")
			b.ReportMetric(100*float64(baseWall)/float64(logWall), "ratio-%")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// threadCPU is the CPU time of the calling thread. Unlike
// getrusage(RUSAGE_THREAD), whose figure for a running thread lags until
// its next tick or context switch, it includes the time up to the call.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// callCPU sums the thread CPU time of a log's segment writes and syncs.
type callCPU struct{ write, sync, syncWall time.Duration }

// callCPUFS is vfs.Default with the segment files' WriteAt and SyncData
// timed into calls (other files, and Fd, pass through, so preallocation
// behaves as on vfs.Default).
type callCPUFS struct {
	vfs.FS
	calls *callCPU
}

type callCPUFile struct {
	vfs.File
	calls *callCPU
}

func (f callCPUFile) WriteAt(p []byte, off int64) (int, error) {
	start := threadCPU()
	n, err := f.File.WriteAt(p, off)
	f.calls.write += threadCPU() - start
	return n, err
}

func (f callCPUFile) SyncData() error {
	start, wall := threadCPU(), time.Now()
	err := f.File.SyncData()
	f.calls.syncWall += time.Since(wall)
	f.calls.sync += threadCPU() - start
	return err
}

func (fs callCPUFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return callCPUFile{f, fs.calls}, nil
}
