//go:build !linux

package bench

func fileSystemType(string) string { return "unknown" }
