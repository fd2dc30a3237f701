// Package discovery owns where flowgate's upstreams come from: a static list
// from the configuration, and the Flowable nodes registered in Consul.
//
// Every source implements Discoverer and sends whole upstream lists; the
// proxy turns each list into an immutable set and swaps it in atomically.
package discovery
