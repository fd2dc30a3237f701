//go:build tools

// Package tools pins the Consul agent that flowgate's end-to-end tests run.
// It is a module of its own so that Consul's dependency graph never touches
// flowgate's. v1.16.1 is the last release under the MPL-2.0 licence.
package tools

import _ "github.com/hashicorp/consul"
