//go:build unix

package certs

import "syscall"

// dirWritable reports whether the current user may create files in dir.
func dirWritable(dir string) bool {
	const wOK, xOK = 0x2, 0x1
	return syscall.Access(dir, wOK|xOK) == nil
}
