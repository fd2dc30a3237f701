//go:build !linux

package consultest

import "syscall"

// sysProcAttr has nothing to add outside Linux: the test's cleanup kills the
// agent.
func sysProcAttr() *syscall.SysProcAttr { return nil }
