#!/usr/bin/env bash
# build.sh builds the Consul agent that flowgate's integration tests run and
# prints the path of the binary on stdout (progress goes to stderr).
#
# It is idempotent: when the binary already exists and reports the pinned
# version, it only prints the path. The binary is built from this directory's
# Go module (tools.go pins github.com/hashicorp/consul); v1.16.1 is the last
# release under the MPL-2.0 licence, so never raise the version.
#
#   FLOWGATE_CACHE   directory for the binary (default: $HOME/.cache/flowgate)
#
# Tests find the binary at the same path, or at $FLOWGATE_CONSUL_BIN.
set -euo pipefail

version=1.16.1
cache="${FLOWGATE_CACHE:-$HOME/.cache/flowgate}"
bin="$cache/consul-$version"

# reports_version BIN: whether BIN's "version" output starts with the pinned
# version line.
reports_version() {
	local out
	out="$("$1" version 2>/dev/null)" || return 1
	[[ "${out%%$'\n'*}" == "Consul v$version" ]]
}

if [[ -x "$bin" ]] && reports_version "$bin"; then
	echo "$bin"
	exit 0
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
mkdir -p "$cache"

echo "build.sh: building Consul v$version into $bin (several minutes on a small machine)" >&2
go mod download

# A go.sum without every entry the build needs makes a read-only build fail;
# let go fill it in then (commit the updated go.sum afterwards).
if ! go list -deps github.com/hashicorp/consul >/dev/null 2>&1; then
	echo "build.sh: go.sum is incomplete; building with -mod=mod" >&2
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
fi

# Build to a temporary name and rename, so that an interrupted build never
# leaves a truncated binary at the final path.
tmp="$(mktemp "$cache/.consul-$version.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
go build -o "$tmp" github.com/hashicorp/consul
chmod 0755 "$tmp"
if ! reports_version "$tmp"; then
	echo "build.sh: built binary does not report Consul v$version:" >&2
	"$tmp" version >&2 || true
	exit 1
fi
mv -f "$tmp" "$bin"
trap - EXIT
echo "$bin"
