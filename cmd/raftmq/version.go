package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

const versionUsage = `
Usage: raftmq version

Prints the build's module version, the VCS revision it was built from
(with "modified" when the tree had uncommitted changes) and the Go
version. Every broker of a cluster should run the same build; compare
this line across them. 'raftmq --version' prints the same.

Example:
  raftmq version
`

func runVersion(_ context.Context, c *cli, args []string) int {
	fs := c.newFlagSet("version", versionUsage)
	positional, status, ok := c.parse(fs, args)
	if !ok {
		return status
	}
	if len(positional) != 0 {
		return c.usageError(fs, "unexpected arguments %q", positional)
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintln(c.stdout, versionText(info))
	return exitOK
}

// versionText describes a build from its build information (nil when the
// binary has none): "raftmq v1.2.0, revision 4cadaaa (2025-01-02T03:04:05Z),
// go1.26.8 linux/amd64".
func versionText(info *debug.BuildInfo) string {
	version, revision, revisionTime, modified := "unknown", "", "", false
	if info != nil {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, setting := range info.Settings {
			switch setting.Key {
			case "vcs.revision":
				revision = setting.Value
			case "vcs.time":
				revisionTime = setting.Value
			case "vcs.modified":
				modified = setting.Value == "true"
			}
		}
	}
	text := "raftmq " + version
	switch {
	case revision == "":
		text += ", revision unknown (built outside a git checkout or with -buildvcs=false)"
	default:
		text += ", revision " + revision
		if revisionTime != "" {
			text += " (" + revisionTime + ")"
		}
		if modified {
			text += " modified"
		}
	}
	return fmt.Sprintf("%s, %s %s/%s", text, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
