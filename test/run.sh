#!/usr/bin/env bash
# The whole flowgate test suite on a fresh Debian machine: installs what the
# tests need (Debian packages, the Consul test agent), then runs formatting and
# vet checks, every Go test with the race detector (unit, end-to-end with real
# curl, openssl, Consul and Chromium), each fuzz target briefly, and the quick
# benchmark. Exit status is non-zero if anything fails.
#
#   bash test/run.sh            # everything
#   FLOWGATE_FUZZTIME=5s bash test/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CI="${CI:-}"
fuzztime="${FLOWGATE_FUZZTIME:-30s}"

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

# --- Debian packages the tests drive ---------------------------------------
bash test/install-debian.sh curl=curl openssl=openssl chromium=chromium certutil=libnss3-tools \
  nginx=nginx haproxy=haproxy caddy=caddy wrk=wrk h2load=nghttp2-client \
  systemd-analyze=systemd taskset=util-linux ps=procps git=git gcc=gcc
export PATH="$PATH:/usr/sbin:/sbin"
# A package's own service (nginx, haproxy, caddy) must not hold the ports the
# benchmark uses.
for svc in nginx haproxy caddy; do
  pkill -x "$svc" 2>/dev/null || true
done

# --- the Consul test agent (built from source, cached) ----------------------
step "Consul test agent"
FLOWGATE_CONSUL_BIN="$(bash test/tools/consul/build.sh)"
export FLOWGATE_CONSUL_BIN
# sed reads to the end: "head -1" would close the pipe early, and under
# pipefail the agent's SIGPIPE (exit 141) would fail the run.
"$FLOWGATE_CONSUL_BIN" version | sed -n 1p

# --- static checks ---------------------------------------------------------
step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^test/tools/') || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
step "go vet"
go vet ./...

# --- tests -----------------------------------------------------------------
# Unit and package tests run in parallel; the end-to-end packages under
# test/ run one at a time, because several of them measure latency
# (slowloris p99, Consul change-to-routing delay, handshake rates) and two
# such packages at once on a 2-core machine would measure each other.
mkdir -p test/artifacts
units=$(go list ./... | grep -v '/test/')
e2e=$(go list ./test/...)
run_tests() {
  local log=$1; shift
  set +e
  go test -race -count=1 -timeout 30m "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    echo "go test failed: $*" >&2
    exit "$status"
  fi
}
step "go test -race (packages)"
run_tests test/artifacts/go-test-units.log $units
step "go test -race -p 1 (end-to-end, against the built binary and real clients)"
run_tests test/artifacts/go-test-e2e.log -p 1 $e2e

step "fuzz targets, $fuzztime each"
# fuzz_one NAME DIR runs one target. Go's fuzzing coordinator (up to Go
# 1.26, go.dev/issue/75804) can fail a target with a bare "context deadline
# exceeded" as -fuzztime ends, having found nothing and written no input:
# such a run is repeated once. Any other failure, or a second one, fails.
fuzz_one() {
  local log="test/artifacts/fuzz-$1.log"
  for attempt in 1 2; do
    if go test -run '^$' -fuzz "^$1\$" -fuzztime "$fuzztime" "$2" >"$log" 2>&1; then
      cat "$log"
      return 0
    fi
    cat "$log"
    if [ "$attempt" = 1 ] && grep -qx '    context deadline exceeded' "$log" \
        && ! grep -q 'Failing input written to' "$log"; then
      echo "note: $1 stopped on Go's fuzztime deadline race (go.dev/issue/75804), no failing input; running it again" >&2
      continue
    fi
    return 1
  done
}
mkdir -p test/artifacts
fuzz_failed=0
while IFS=: read -r file name; do
  dir="./$(dirname "$file")"
  echo "-- $name in $dir"
  if ! fuzz_one "$name" "$dir"; then
    echo "FAIL: fuzz target $name in $dir" >&2
    fuzz_failed=1
  fi
done < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' --with-filename . \
          | grep -v '^./test/tools/' | sed -E 's#^\./##; s#:func #:#' | sort -u)
[ "$fuzz_failed" = 0 ] || exit 1

if [ -f test/bench/run.sh ]; then
  step "benchmark (quick)"
  bash test/bench/run.sh --quick
fi

step "all tests passed"
passed=$(cat test/artifacts/go-test-units.log test/artifacts/go-test-e2e.log | grep -c '^ok ' || true)
echo "packages: ${passed} passed, 0 failed"
