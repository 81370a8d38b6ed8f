package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/raftmq/raftmq/clients"
)

// SystemDisk is the raw-disk baseline: each batch appended to a file per
// replica and made durable with fdatasync, acknowledged at a majority,
// with no Raft and no NATS. It is a ceiling for this machine's disk, not
// a queue.
const SystemDisk = "disk"

// diskSetting is the disk baseline's setting label.
const diskSetting = "fdatasync-quorum"

// diskBatchBytesCap is the largest batch the raftmq SDK sends over a
// connection with NATS's default max payload. The disk baseline caps its
// batches alike, so it writes batches of the sizes raftmq writes.
var diskBatchBytesCap = clients.MaxBatchBytes(server.MAX_PAYLOAD_SIZE)

// DiskConfig configures the disk baseline.
type DiskConfig struct {
	// Workload supplies the partitions, replicas (files per partition),
	// linger, batch size and batches in flight.
	Workload Workload
	// Dir holds the files: the run's data directory, on the disk being
	// measured.
	Dir string
	// FS opens the files. Default vfs.Default (fdatasync on Linux).
	FS vfs.FS
	// Log receives a line per run when its files are closed: bytes and
	// fdatasyncs, and how long after the last acknowledgement the slowest
	// file had everything durable. Nil discards it.
	Log io.Writer
}

// StartDisk returns the disk baseline. Each Prepare creates, for every
// partition, Workload.Replicas files under Dir, each with a writer
// goroutine of its own. A writer takes everything queued for it, appends
// it to its file and issues one fdatasync (group commit, as a log does);
// a batch is acknowledged once a majority of its partition's writers have
// it durable. The producers build batches with raftmq's record-batch
// encoding, linger, batch size and window, so the bytes written per record
// are those raftmq's log holds (without its frame headers). Nothing else
// is done: no Raft, no NATS, no offsets, no index, no reads.
func StartDisk(ctx context.Context, cfg DiskConfig) (Target, error) {
	if cfg.Dir == "" {
		return nil, errors.New("bench: the disk baseline needs a directory")
	}
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	if err := fs.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: disk baseline: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = io.Discard
	}
	return &diskTarget{
		workload: cfg.Workload, dir: cfg.Dir, fs: fs, log: log,
		fsName: fileSystemName(cfg.Dir), replicas: max(cfg.Workload.Replicas, 1),
	}, nil
}

type diskTarget struct {
	workload Workload
	dir      string
	fs       vfs.FS
	log      io.Writer
	fsName   string
	replicas int
	// run counts Prepares; each run's files are named after it.
	run   int
	parts []*diskPartition // the current run's
}

// quorum is how many of a partition's files must have a batch durable
// before it is acknowledged: a majority, as for a Raft group.
func (t *diskTarget) quorum() int { return t.replicas/2 + 1 }

func (t *diskTarget) Info() TargetInfo {
	quorum := t.quorum()
	return TargetInfo{
		System:  SystemDisk,
		Setting: diskSetting,
		Durability: fmt.Sprintf("fdatasync quorum of %d files, %s: each partition's batches appended to %d files (a writer each, "+
			"one fdatasync per round of writes) and acknowledged once %d have them durable; no Raft, no NATS "+
			"(a ceiling for this machine's disk, not a queue)", t.replicas, t.fsName, t.replicas, quorum),
		Settings: map[string]string{
			"storage": t.fsName, "fsync": "fdatasync", "replicas": strconv.Itoa(t.replicas), "quorum": strconv.Itoa(quorum),
		},
		Versions: map[string]string{},
	}
}

// ConsumerKinds is empty: the baseline never reads what it wrote.
func (t *diskTarget) ConsumerKinds() []string { return nil }

// Prepare stops the writers of the previous run, removes their files and
// starts w.Partitions × replicas new ones.
func (t *diskTarget) Prepare(ctx context.Context, w Workload) error {
	if w.Kind != KindProduce {
		return fmt.Errorf("bench: %s measures publishing only, not %s", SystemDisk, w.Kind)
	}
	if err := t.stop(); err != nil {
		return err
	}
	t.workload = w
	t.run++
	for p := range w.Partitions {
		part := &diskPartition{quorum: int32(t.quorum())}
		t.parts = append(t.parts, part)
		for r := range t.replicas {
			path := t.fs.PathJoin(t.dir, fmt.Sprintf("run%d-p%d-r%d.log", t.run, p, r))
			file, err := t.fs.Create(path, vfs.WriteCategoryUnspecified)
			if err != nil {
				return fmt.Errorf("bench: disk baseline: %w", err)
			}
			writer := &diskWriter{file: file, path: path, wake: make(chan struct{}, 1), done: make(chan struct{})}
			part.writers = append(part.writers, writer)
			go writer.run()
		}
	}
	return nil
}

// stop closes the current run's writers (each first writes what is
// queued), reports the run and removes its files.
func (t *diskTarget) stop() error {
	var errs []error
	for _, part := range t.parts {
		for _, writer := range part.writers {
			writer.close()
		}
	}
	var files, syncs, bytes, syncNanos, lastAck, lastDurable int64
	for _, part := range t.parts {
		lastAck = max(lastAck, part.lastAck.Load())
		for _, writer := range part.writers {
			<-writer.done
			errs = append(errs, writer.file.Close(), t.fs.Remove(writer.path))
			files++
			syncs += writer.syncs
			bytes += writer.bytes
			syncNanos += writer.syncNanos
			lastDurable = max(lastDurable, writer.lastDurable)
		}
	}
	if syncs > 0 && lastAck > 0 {
		fmt.Fprintf(t.log, "disk baseline run %d: %d files, %.1f MB written, %d fdatasyncs (mean %.0f KiB, %.2f ms); "+
			"the last file was durable %.1f ms after the last acknowledgement\n",
			t.run, files, float64(bytes)/1e6, syncs, float64(bytes)/float64(syncs)/1024,
			float64(syncNanos)/float64(syncs)/1e6, float64(max(lastDurable-lastAck, 0))/1e6)
	}
	t.parts = nil
	return errors.Join(errs...)
}

func (t *diskTarget) NewProducer(ctx context.Context, id int, onAck AckFunc) (Producer, error) {
	parts := t.parts
	p := newBatchingProducer(t.workload, onAck, diskBatchBytesCap)
	p.publish = func(partition int, id uint64, batch []byte) error {
		if partition < 0 || partition >= len(parts) {
			return fmt.Errorf("bench: disk baseline has no partition %d", partition)
		}
		parts[partition].write(batch, func(err error) { p.complete(id, err) })
		return nil
	}
	return p, nil
}

// newProducerWithAcks implements batchAckTarget: a batch's outcome is
// learned at once and reported so, as for raftmq (fabricProducer.withAcks).
func (t *diskTarget) newProducerWithAcks(ctx context.Context, id int, ps *producerState) (Producer, error) {
	p, err := t.NewProducer(ctx, id, ps.onAck)
	return reportingBatches(p, err, ps)
}

func (t *diskTarget) NewReader(context.Context, string, int, int) (Reader, error) {
	return nil, fmt.Errorf("bench: %s has nothing to consume", SystemDisk)
}

func (t *diskTarget) Close() error { return t.stop() }

// diskPartition is one partition's writers, one per replica.
type diskPartition struct {
	writers []*diskWriter
	quorum  int32
	lastAck atomic.Int64 // unix nanoseconds of the last batch's quorum
}

// diskBuffers recycles batch copies once every writer has written them.
var diskBuffers sync.Pool // of *[]byte

// write copies batch and queues it on every writer; complete is called
// once, from a writer's goroutine, when a majority has it durable (nil)
// or can no longer have it (a write or sync error).
func (p *diskPartition) write(batch []byte, complete func(error)) {
	buf, _ := diskBuffers.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = append((*buf)[:0], batch...)
	b := &diskBatch{buf: buf, part: p, quorum: p.quorum, replicas: int32(len(p.writers)), complete: complete}
	for _, writer := range p.writers {
		writer.add(b)
	}
}

// diskBatch is one batch on its way to a partition's files.
type diskBatch struct {
	buf              *[]byte
	part             *diskPartition
	quorum, replicas int32
	complete         func(error)
	synced, failed   atomic.Int32
	finished         atomic.Int32
}

// done records one writer's outcome for b: the quorum-th success
// completes it, and so does the failure that leaves fewer than a quorum
// able to succeed (the two never both happen). The last writer recycles
// the bytes.
func (b *diskBatch) done(err error) {
	if err == nil {
		if b.synced.Add(1) == b.quorum {
			b.part.lastAck.Store(time.Now().UnixNano())
			b.complete(nil)
		}
	} else if b.failed.Add(1) == b.replicas-b.quorum+1 {
		b.complete(err)
	}
	if b.finished.Add(1) == b.replicas {
		diskBuffers.Put(b.buf)
	}
}

// diskWriter appends one replica's batches to its file. Its goroutine
// (run) takes everything queued, writes it, syncs once and reports each
// batch; a failed write or sync is sticky.
type diskWriter struct {
	file vfs.File
	path string
	wake chan struct{} // capacity 1: something was queued or close was called
	done chan struct{} // closed when run returns
	// Owned by run; read after done is closed.
	bytes, syncs, syncNanos int64
	lastDurable             int64 // unix nanoseconds the last fdatasync returned

	mu     sync.Mutex
	queue  []*diskBatch
	closed bool
}

func (w *diskWriter) add(b *diskBatch) {
	w.mu.Lock()
	w.queue = append(w.queue, b)
	w.mu.Unlock()
	w.signal()
}

func (w *diskWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// close makes run return once it has written what is queued.
func (w *diskWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.signal()
}

func (w *diskWriter) run() {
	defer close(w.done)
	var err error
	var round []*diskBatch
	for {
		w.mu.Lock()
		round, w.queue = w.queue, round[:0]
		closed := w.closed
		w.mu.Unlock()
		if len(round) == 0 {
			if closed {
				return
			}
			<-w.wake
			continue
		}
		for _, b := range round {
			if err != nil {
				break
			}
			n, werr := w.file.Write(*b.buf)
			w.bytes += int64(n)
			if werr != nil {
				err = fmt.Errorf("bench: disk baseline: write %s: %w", filepath.Base(w.path), werr)
			}
		}
		if err == nil {
			start := time.Now()
			if serr := w.file.SyncData(); serr != nil {
				err = fmt.Errorf("bench: disk baseline: fdatasync %s: %w", filepath.Base(w.path), serr)
			}
			end := time.Now()
			w.syncs++
			w.syncNanos += int64(end.Sub(start))
			w.lastDurable = end.UnixNano()
		}
		for i, b := range round {
			b.done(err)
			round[i] = nil
		}
	}
}
