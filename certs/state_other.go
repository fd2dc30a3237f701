//go:build !unix

package certs

import "os"

// dirWritable reports whether dir exists and a file can be created in it.
func dirWritable(dir string) bool {
	f, err := os.CreateTemp(dir, ".flowgate-probe-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return true
}
