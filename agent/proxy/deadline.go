package proxy

import "time"

// maxDeadlineSlack bounds how much earlier than asked a kept read deadline
// may fall (deadlineSlack).
const maxDeadlineSlack = 500 * time.Millisecond

// deadlineSlack is how much earlier than asked a read deadline for a
// timeout d may fall when it is kept rather than renewed: 1/64 of d, at
// most maxDeadlineSlack.
func deadlineSlack(d time.Duration) time.Duration {
	return min(d/64, maxDeadlineSlack)
}

// keptDeadline remembers the read deadline in force on a connection, so
// that renewing it for every request or read, which costs a runtime timer
// update and three clock reads, happens only when the deadline would move
// later by more than deadlineSlack. A connection that reads every
// millisecond so renews a 60 s deadline about twice a second instead of a
// thousand times, and its timeout may end up to the slack early, never
// late. NGINX keeps its timers the same way, within 300 ms.
//
// Whoever sets the connection's deadline otherwise calls set or forget.
type keptDeadline struct {
	t     time.Time // the deadline in force, zero for none
	known bool      // t is known to be in force
}

// renew returns the read deadline for a timeout d from now (none if d is
// not positive) and whether it must be set on the connection; when it
// need not, the deadline returned is the one in force.
func (k *keptDeadline) renew(d time.Duration) (time.Time, bool) {
	if d <= 0 {
		if k.known && k.t.IsZero() {
			return time.Time{}, false
		}
		k.set(time.Time{})
		return time.Time{}, true
	}
	if k.known && !k.t.IsZero() {
		// The deadline asked for is d from now, the one in force
		// time.Until(k.t) from now (one clock read where time.Now takes
		// two).
		if later := d - time.Until(k.t); later >= 0 && later < deadlineSlack(d) {
			return k.t, false
		}
	}
	t := time.Now().Add(d)
	k.set(t)
	return t, true
}

// set records a deadline set on the connection.
func (k *keptDeadline) set(t time.Time) { k.t, k.known = t, true }

// forget says the deadline in force is not known (another party set it):
// the next renew sets it.
func (k *keptDeadline) forget() { k.known = false }
