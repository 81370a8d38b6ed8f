package segmentlog

import (
	"os"
	"syscall"
)

// fdatasyncFile is the baselines' fdatasync: the same system call the log
// makes through vfs.File.SyncData.
func fdatasyncFile(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
