// Package proxy is flowgate's reverse proxy: it picks an upstream for each
// request (round robin, least connections, client-IP consistent hashing,
// optional cookie stickiness), rewrites the forwarding headers, passes
// WebSocket upgrades through, retries what is safe to retry, tracks passive
// health like NGINX's max_fails/fail_timeout, and drains upstreams that leave
// the set.
//
// The upstream set is an immutable snapshot swapped atomically by SetUpstreams;
// upstreams that stay in the set keep their connections, counters and health.
package proxy
