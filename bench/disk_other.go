//go:build !linux

package bench

// fileSystemName names the file system holding dir; outside Linux it does
// not know.
func fileSystemName(dir string) string { return fileSystemType(dir) }
