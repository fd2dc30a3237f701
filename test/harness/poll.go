package harness

import "time"

// Poll calls f every 50 ms until it returns true or timeout passes, and
// reports whether f returned true. It is PollEvery with a 50 ms interval.
func Poll(timeout time.Duration, f func() bool) bool {
	return PollEvery(timeout, 50*time.Millisecond, f)
}

// PollEvery calls f every interval until it returns true or timeout passes,
// and reports whether f returned true. f is called at least once;
// PollEvery gives up when a call of f that returned false ends after the
// deadline.
func PollEvery(timeout, interval time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}
