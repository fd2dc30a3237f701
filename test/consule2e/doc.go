// Package consule2e holds flowgate's end-to-end tests of Consul discovery:
// the built flowgate binary, a real Consul dev agent (test/consul) and
// stand-in Flowable nodes (test/flowablestub), with real HTTPS requests over
// loopback.
//
// The tests check what an operator relies on: nodes that join, fail their
// check or leave are followed within a second under a continuous load that
// sees no failed request; losing the Consul agent keeps the last-known set
// serving and shows in the staleness metric and /status; the delay from a
// Consul change to the first request routed accordingly (printed as
// FIGURE lines, p50/p99 over 50 changes); zero passing instances answer 503
// with Retry-After unless consul.fail_open is set; and flowgate's own
// registration (--consul-register) passes its check and leaves at SIGTERM.
//
// The package has only tests. The Consul binary comes from
// test/tools/consul/build.sh; without it the tests fail under CI=true and
// skip loudly otherwise.
package consule2e
