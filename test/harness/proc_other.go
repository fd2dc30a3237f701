//go:build !linux

package harness

import "syscall"

// sysProcAttr has nothing to add outside Linux: the test's cleanup stops
// the children.
func sysProcAttr() *syscall.SysProcAttr { return nil }
