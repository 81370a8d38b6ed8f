//go:build !linux

package segmentlog

import "os"

// fdatasyncFile is the baselines' data sync where the platform has no
// fdatasync: File.Sync (on macOS, fsync; the log's SyncData there syncs
// the same way through Pebble's vfs).
func fdatasyncFile(f *os.File) error { return f.Sync() }
