// Package agent wires flowgate together from one Config: the certificate
// provider, the upstream sources, the reverse proxy, the HTTPS, redirect and
// admin listeners, and their lifecycle (graceful shutdown on SIGTERM, reload
// on SIGHUP with the last good configuration kept when the new one is bad).
package agent
