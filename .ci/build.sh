#!/usr/bin/env bash
# The one command that builds flowgate. The Dockerfile runs it, and so does
# the deploy test (test/deploy), so the image and CI build the same binary:
# static (no cgo), reproducible paths (-trimpath), stripped, version-stamped.
#
#   bash .ci/build.sh                                 # -> bin/flowgate, version "dev"
#   VERSION=1.2.3 OUT=/tmp/flowgate bash .ci/build.sh
#
# OUT is relative to the repository root (the script changes there first).
set -euo pipefail
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION:-dev}" -o "${OUT:-bin/flowgate}" ./cmd/flowgate
