// Package certs owns where flowgate's serving certificates come from and how
// they are kept current: certificate files that are watched and hot-swapped,
// and the built-in issuer that creates, persists and rotates flowgate's own
// certificate.
//
// Every source implements Provider. A Provider publishes immutable snapshots
// (a *Set) through an atomic pointer, so a TLS handshake costs one atomic load
// and a reload never exposes a half-built state. A reload that fails keeps the
// last good snapshot serving.
package certs
