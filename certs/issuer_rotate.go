package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Run rotates the leaf until ctx is cancelled, then returns nil. It wakes at
// the renewal point (or retry time) and at least every CheckInterval, and
// decides by the wall clock (Now), so a host that slept past the renewal
// point renews within CheckInterval of waking. Run must not be called twice
// at the same time.
func (iss *Issuer) Run(ctx context.Context) error {
	if !iss.running.CompareAndSwap(false, true) {
		return errors.New("issuer: Run is already running")
	}
	defer iss.running.Store(false)
	timer := time.NewTimer(iss.wait())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-iss.reload:
			iss.check(true)
		case <-timer.C:
			iss.check(false)
		}
		timer.Reset(iss.wait())
	}
}

// wait is how long Run sleeps before the next check.
func (iss *Issuer) wait() time.Duration {
	d := iss.nextAttempt().Sub(iss.opts.Now())
	return max(0, min(d, iss.opts.CheckInterval))
}

// check rotates the leaf if it is due, or retries saving a pending one.
// forced (a Reload) re-reads a user-provided CA and skips the backoff.
func (iss *Issuer) check(forced bool) {
	now := iss.opts.Now()
	if forced {
		iss.reloadCA()
		if iss.failures > 0 {
			iss.mu.Lock()
			iss.retryAt = now
			iss.mu.Unlock()
		}
	}
	if iss.failures > 0 && now.Before(iss.retryAt) {
		return
	}
	reason := iss.dueReason(now)
	if reason == "" && iss.pending == nil {
		return
	}
	var err error
	if reason != "" {
		err = iss.rotate(now, reason)
	} else {
		err = iss.savePending(now)
	}
	if err != nil {
		iss.opts.Logger.Error("certificate rotation failed; retrying with backoff",
			"cert", issuerName, "err", err, "serving_serial", SerialHex(iss.current.Leaf),
			"not_after", iss.current.Leaf.NotAfter, "retry_at", iss.retryAt)
	}
}

// dueReason says why the current leaf must be replaced now, or "".
func (iss *Issuer) dueReason(now time.Time) string {
	if !now.Before(iss.renewAt) {
		return "due for renewal"
	}
	if iss.ca != iss.signer {
		return "the CA changed"
	}
	return ""
}

// rotate issues a new leaf, serves it and saves it. When issuing fails the
// current leaf stays; when only saving fails the new leaf is served from
// memory and saving is retried.
func (iss *Issuer) rotate(now time.Time, reason string) error {
	kp, err := iss.issue(now)
	if err != nil {
		iss.fail(now, err, false)
		return err
	}
	previous := iss.current
	iss.serve(kp.Certificate, now, renewalPoint(kp.Certificate.Leaf.NotAfter, iss.opts.RenewBefore, iss.opts.Rand))
	logArgs := []any{"cert", issuerName, "reason", reason, "serial", SerialHex(kp.Certificate.Leaf),
		"hosts", iss.hosts.String(), "not_after", kp.Certificate.Leaf.NotAfter, "next_rotation", iss.renewAt}
	if previous != nil {
		logArgs = append(logArgs, "previous_serial", SerialHex(previous.Leaf))
	}
	iss.opts.Logger.Info("issued a new certificate", logArgs...)
	iss.setPending(kp)
	return iss.savePending(now)
}

// issue creates a new leaf, replacing an expiring generated CA first.
func (iss *Issuer) issue(now time.Time) (*KeyPair, error) {
	if iss.ca != nil && iss.ca.generated && !now.Add(iss.opts.LeafLifetime).Before(iss.ca.cert.NotAfter) {
		ca, err := OpenCA(iss.caOptions())
		if err != nil {
			return nil, err
		}
		iss.mu.Lock()
		iss.ca = ca
		iss.mu.Unlock()
	}
	key, err := iss.opts.KeyType.generate()
	if err != nil {
		return nil, err
	}
	req := leafRequest{
		hosts:     iss.hosts,
		notBefore: now.Add(-backdate),
		notAfter:  now.Add(iss.opts.LeafLifetime),
		rand:      iss.opts.Rand,
	}
	return issueLeaf(iss.ca, key, req)
}

// serve publishes cert for new handshakes and schedules its renewal at
// renewAt.
func (iss *Issuer) serve(cert *tls.Certificate, now, renewAt time.Time) {
	set, err := NewSet(cert)
	if err != nil {
		// NewSet fails only for a nil or unparsed leaf, which issue and
		// loadLeaf never produce.
		panic(fmt.Sprintf("issuer: %v", err))
	}
	iss.mu.Lock()
	iss.current = cert
	iss.signer = iss.ca
	iss.renewAt = renewAt
	iss.loadedAt = now
	iss.mu.Unlock()
	iss.holder.Store(set)
	iss.metrics.served(cert.Leaf, iss.ca, now)
	iss.metrics.next(iss.nextAttempt())
}

func (iss *Issuer) setPending(kp *KeyPair) {
	iss.mu.Lock()
	iss.pending = kp
	iss.mu.Unlock()
}

// savePending writes the pending leaf to the state directory.
func (iss *Issuer) savePending(now time.Time) error {
	certPath, keyPath := iss.leafPaths()
	if err := ensureStateDir(iss.opts.StateDir); err != nil {
		err = fmt.Errorf("saving the new certificate (served from memory until saved): %w", err)
		iss.fail(now, err, true)
		return err
	}
	if err := iss.pending.WriteFiles(certPath, keyPath); err != nil {
		err = fmt.Errorf("saving the new certificate (served from memory until saved): %w", err)
		iss.fail(now, err, true)
		return err
	}
	if iss.failures > 0 {
		iss.opts.Logger.Info("saved the certificate after earlier failures", "cert", issuerName,
			"serial", SerialHex(iss.pending.Certificate.Leaf), "failures", iss.failures)
	}
	iss.mu.Lock()
	iss.pending = nil
	iss.failures = 0
	iss.rotErr = nil
	iss.mu.Unlock()
	iss.metrics.rotated(nil, true)
	iss.metrics.next(iss.nextAttempt())
	return nil
}

// fail records a failed attempt and schedules a retry with backoff. served
// tells whether a new leaf went into service despite the failure.
func (iss *Issuer) fail(now time.Time, err error, served bool) {
	iss.mu.Lock()
	iss.failures++
	iss.retryAt = now.Add(backoff(iss.failures))
	iss.rotErr = err
	iss.mu.Unlock()
	iss.metrics.rotated(err, served)
	iss.metrics.next(iss.retryAt)
}

// reloadCA re-reads a user-provided CA. On failure the old CA stays.
func (iss *Issuer) reloadCA() {
	if iss.ca == nil || iss.ca.generated {
		return
	}
	ca, err := OpenCA(iss.caOptions())
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.caErr = err
	if err != nil {
		iss.opts.Logger.Error("reloading the CA failed; keeping the current one", "cert", issuerName, "err", err)
		return
	}
	if bytes.Equal(ca.cert.Raw, iss.ca.cert.Raw) {
		return
	}
	iss.opts.Logger.Info("the CA changed", "cert", issuerName, "ca", iss.opts.CACertFile,
		"serial", SerialHex(ca.cert), "not_after", ca.cert.NotAfter)
	iss.ca = ca
}

// loadLeaf serves the saved leaf if it is still usable and returns "", or
// returns why a new one must be issued. A saved leaf that is due for renewal
// but still valid is served as well, as the fallback should issuing fail. A
// corrupt saved leaf is moved aside.
func (iss *Issuer) loadLeaf(now time.Time) string {
	certPath, keyPath := iss.leafPaths()
	pair, err := loadStatePair(certPath, keyPath)
	var corrupt *corruptStateError
	switch {
	case err == nil:
	case errors.Is(err, errStateMissing):
		return "no saved certificate"
	case errors.As(err, &corrupt):
		moved, mvErr := moveAside(corrupt.paths, "corrupt", now)
		iss.opts.Logger.Error("the saved certificate is corrupt; moved it aside, issuing a new one",
			"cert", certPath, "err", corrupt.err, "moved_to", moved, "move_err", mvErr)
		return "the saved certificate was corrupt"
	default:
		iss.opts.Logger.Warn("cannot read the saved certificate; issuing a new one", "cert", certPath, "err", err)
		return "the saved certificate is unreadable"
	}
	if reason := iss.unusable(pair.Leaf, now); reason != "" {
		return reason
	}
	if iss.ca != nil {
		pair.Certificate = append(pair.Certificate[:1:1], iss.ca.chain...)
	}
	renewAt := renewalPoint(pair.Leaf.NotAfter, iss.opts.RenewBefore, iss.opts.Rand)
	if !now.Before(renewAt) {
		if now.Before(pair.Leaf.NotAfter) {
			// Still valid: serve it while the rotation that follows is
			// attempted (and, if it fails, retried).
			iss.serve(pair, now, now)
		}
		return "the saved certificate is due for renewal"
	}
	iss.serve(pair, now, renewAt)
	iss.opts.Logger.Info("reusing the saved certificate", "cert", issuerName, "serial", SerialHex(pair.Leaf),
		"not_after", pair.Leaf.NotAfter, "next_rotation", iss.renewAt)
	return ""
}

// unusable says why a saved leaf cannot be reused, or "".
func (iss *Issuer) unusable(leaf *x509.Certificate, now time.Time) string {
	if iss.ca != nil {
		if leaf.CheckSignatureFrom(iss.ca.cert) != nil {
			return "the saved certificate is not signed by the CA"
		}
	} else if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) ||
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) != nil {
		return "the saved certificate is not self-signed"
	}
	if !iss.hosts.matches(leaf) {
		return "the hosts changed"
	}
	if keyAlgorithmOf(leaf.PublicKey) != iss.opts.KeyType {
		return "the key type changed"
	}
	if leaf.NotAfter.Sub(leaf.NotBefore.Add(backdate)) > iss.opts.LeafLifetime {
		return "the leaf lifetime was shortened"
	}
	if now.Before(leaf.NotBefore) {
		return "the saved certificate is not valid yet"
	}
	return ""
}

// renewalPoint is when a leaf expiring at notAfter is renewed:
// renewBefore ahead of notAfter, moved earlier by a random jitter in
// [0, renewBefore/10) so that instances started together do not renew
// together. If r fails, the jitter is half its maximum.
func renewalPoint(notAfter time.Time, renewBefore time.Duration, r io.Reader) time.Time {
	maxJitter := renewBefore / 10
	jitter := maxJitter / 2
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err == nil && maxJitter > 0 {
		// 53 random bits give a uniform fraction in [0, 1).
		frac := float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
		jitter = time.Duration(frac * float64(maxJitter))
	}
	return notAfter.Add(-renewBefore - jitter)
}

// backoff is the delay before retry number n (n ≥ 1): 1 s doubling up to
// 5 min.
func backoff(n int) time.Duration {
	if n > 20 {
		return maxBackoff
	}
	return min(minBackoff<<(n-1), maxBackoff)
}
