package proxy

// heldWriteError is a failure to send what a pollConn held, reported by
// the read that was to send it. sent says some of it went out before.
type heldWriteError struct {
	err  error
	sent bool
}

func (e *heldWriteError) Error() string { return e.err.Error() }
func (e *heldWriteError) Unwrap() error { return e.err }
