// Package deploy tests what an operator copies: the Dockerfile and
// .ci/build.sh, the systemd unit, the Nomad jobs, the Consul service
// definitions, the example configuration and every configuration shown in
// README.md and deploy/*.md. Each file is checked as written, with the real
// tools (flowgate check, systemd-analyze, systemd-sysusers, the Consul agent
// and CLI, the HCL parser) and, where it serves traffic, by running flowgate
// with it.
package deploy
