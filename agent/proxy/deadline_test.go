package proxy

import (
	"testing"
	"time"
)

func TestKeptDeadline(t *testing.T) {
	var k keptDeadline
	const d = time.Minute // slack 500 ms

	first, renew := k.renew(d)
	if !renew {
		t.Fatal("first renew: not set; want the deadline set")
	}
	if left := time.Until(first); left < d-time.Second || left > d {
		t.Fatalf("first renew: deadline %v from now; want %v", left, d)
	}

	// Within the slack: the deadline in force stays.
	got, renew := k.renew(d)
	if renew || !got.Equal(first) {
		t.Errorf("renew right after: %v, set %v; want the kept %v, not set", got, renew, first)
	}

	// A shorter timeout is never stretched.
	got, renew = k.renew(d / 2)
	if !renew || !got.Before(first) {
		t.Errorf("renew with a shorter timeout: %v, set %v; want an earlier deadline set", got, renew)
	}

	// Another party set the deadline: the next renew sets it again.
	k.forget()
	if _, renew = k.renew(d); !renew {
		t.Error("renew after forget: not set")
	}
	k.set(aLongTimeAgo)
	if got, renew = k.renew(d); !renew || time.Until(got) < d-time.Second {
		t.Errorf("renew after a deadline in the past: %v, set %v; want d from now, set", got, renew)
	}

	// No timeout: cleared once, then kept.
	if got, renew = k.renew(0); !renew || !got.IsZero() {
		t.Errorf("renew(0): %v, set %v; want none, set", got, renew)
	}
	if got, renew = k.renew(0); renew || !got.IsZero() {
		t.Errorf("renew(0) again: %v, set %v; want none, not set", got, renew)
	}
}

// TestKeptDeadlineSlack holds a kept deadline within the slack: once the
// deadline asked for would be later by more than that, it is renewed.
func TestKeptDeadlineSlack(t *testing.T) {
	const d = 640 * time.Millisecond // slack 10 ms
	if s := deadlineSlack(d); s != 10*time.Millisecond {
		t.Fatalf("deadlineSlack(%v) = %v; want 10ms", d, s)
	}
	if s := deadlineSlack(time.Hour); s != maxDeadlineSlack {
		t.Fatalf("deadlineSlack(1h) = %v; want %v", s, maxDeadlineSlack)
	}
	var k keptDeadline
	first, _ := k.renew(d)
	time.Sleep(20 * time.Millisecond)
	got, renew := k.renew(d)
	if !renew {
		t.Fatalf("renew 20 ms later: kept %v; want renewed (slack 10 ms)", got)
	}
	if late := got.Sub(first); late < 20*time.Millisecond {
		t.Errorf("renewed deadline only %v after the first; want at least 20ms", late)
	}
}
