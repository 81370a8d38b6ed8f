package snapshot

import (
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const benchBodySize = 32 << 20

// benchSetup writes the benchmark body to a plain file in a temporary
// directory on the real file system.
func benchSetup(b *testing.B) (fs vfs.FS, dir, bodyPath string) {
	b.Helper()
	fs, dir = vfs.Default, b.TempDir()
	bodyPath = fs.PathJoin(dir, "body")
	writeFile(b, fs, bodyPath, testBody(1, benchBodySize))
	return fs, dir, bodyPath
}

// copyFile is the baseline: a plain copy of src to dst, synced.
func copyFile(b *testing.B, fs vfs.FS, src, dst string) {
	in, err := fs.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := fs.Create(dst, vfs.WriteCategoryUnspecified)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(out, in, make([]byte, 256<<10)); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite: taking a snapshot of a body read from a file (compress,
// checksum, fsync, rename) beside a plain synced copy of the same file.
// Bytes are the uncompressed body.
func BenchmarkWrite(b *testing.B) {
	fs, dir, bodyPath := benchSetup(b)
	b.Run("snapshot", func(b *testing.B) {
		s, err := OpenStore(fs, fs.PathJoin(dir, "store"))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchBodySize)
		b.ReportAllocs()
		var info Info
		for i := 0; b.Loop(); i++ {
			in, err := fs.Open(bodyPath)
			if err != nil {
				b.Fatal(err)
			}
			w, err := s.Create(Meta{Index: uint64(i + 1), Term: 1})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(w, in); err != nil {
				b.Fatal(err)
			}
			in.Close()
			if info, err = w.Commit(); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Prune(1, 0); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(info.Size)/benchBodySize, "ratio")
	})
	b.Run("filecopy", func(b *testing.B) {
		b.SetBytes(benchBodySize)
		b.ReportAllocs()
		for b.Loop() {
			copyFile(b, fs, bodyPath, fs.PathJoin(dir, "copy"))
		}
	})
}

// BenchmarkStream: streaming a snapshot file in 1 MiB chunk messages
// (encode, decode, receive, verify, fsync, install) beside a plain synced
// copy of the same file. Bytes are the snapshot file.
func BenchmarkStream(b *testing.B) {
	fs, dir, bodyPath := benchSetup(b)
	src, err := OpenStore(fs, fs.PathJoin(dir, "src"))
	if err != nil {
		b.Fatal(err)
	}
	in, err := fs.Open(bodyPath)
	if err != nil {
		b.Fatal(err)
	}
	w, err := src.Create(testMeta(1))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(w, in); err != nil {
		b.Fatal(err)
	}
	in.Close()
	info, err := w.Commit()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("snapshot", func(b *testing.B) {
		dst, err := OpenStore(fs, fs.PathJoin(dir, "dst"))
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(info.Size))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := streamAll(src, dst, 1, 1<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("filecopy", func(b *testing.B) {
		b.SetBytes(int64(info.Size))
		b.ReportAllocs()
		for b.Loop() {
			copyFile(b, fs, info.Path, fs.PathJoin(dir, "copy"))
		}
	})
}
