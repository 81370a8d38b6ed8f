package bench

import "syscall"

// fileSystemType names the file system holding dir, as far as it matters
// here: "tmpfs" (fsync is free there, so the figures mean little) or
// "disk".
func fileSystemType(dir string) string {
	var stat syscall.Statfs_t
	if err := syscall.Statfs(dir, &stat); err != nil {
		return "unknown"
	}
	const tmpfsMagic = 0x01021994
	if stat.Type == tmpfsMagic {
		return "tmpfs"
	}
	return "disk"
}
