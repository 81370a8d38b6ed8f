package bench

import (
	"os"
	"path/filepath"
	"strings"
)

// fileSystemName names the file system type holding dir ("ext4", "xfs",
// "tmpfs", ...) from the longest mount point in /proc/self/mounts that
// contains it; fileSystemType's "disk", "tmpfs" or "unknown" when the
// mount table does not say.
func fileSystemName(dir string) string {
	path, err := filepath.Abs(dir)
	if err == nil {
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			path = resolved
		}
	}
	table, rerr := os.ReadFile("/proc/self/mounts")
	if err != nil || rerr != nil {
		return fileSystemType(dir)
	}
	name, longest := "", -1
	for line := range strings.SplitSeq(string(table), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		mount := strings.ReplaceAll(fields[1], `\040`, " ")
		inside := path == mount || mount == "/" || strings.HasPrefix(path, mount+"/")
		if inside && len(mount) >= longest {
			name, longest = fields[2], len(mount)
		}
	}
	if name == "" {
		return fileSystemType(dir)
	}
	return name
}
