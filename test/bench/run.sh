#!/usr/bin/env bash
# The flowgate benchmark: flowgate side by side with nginx, HAProxy and Caddy,
# each terminating TLS with the same ECDSA P-256 certificate in front of the
# same two fast stand-in upstreams, configured alike (see
# test/bench/flowbench/configs.go). The proxy under test is pinned to core 1,
# the load generators (wrk, h2load, flowbench's own TLS and WebSocket
# clients) and the upstreams to core 0.
#
#   bash test/bench/run.sh                  # full: 5 alternating runs of 8 s per peer and scenario
#   bash test/bench/run.sh --quick          # CI: one 2 s run each, about 3 minutes
#   bash test/bench/run.sh --out DIR        # results.md, results.json, runs.jsonl, logs (default test/artifacts/bench)
#   bash test/bench/run.sh --pprof          # also flowgate CPU/heap profiles in DIR/pprof
#
# Other flags pass through to `flowbench run` (--runs N, --duration 10s,
# --peers flowgate,nginx, --scenarios h1-keepalive-1k,ws-idle, --keep,
# --flowgate-env GOGC=off to measure flowgate with a runtime setting).
# Exit status is non-zero when a peer fails to start or any run errors;
# missed performance targets are reported in the table, not failures.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"

out=test/artifacts/bench
args=()
while (($#)); do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

# --- tools from Debian --------------------------------------------------------
bash test/install-debian.sh nginx=nginx haproxy=haproxy caddy=caddy wrk=wrk \
  h2load=nghttp2-client openssl=openssl taskset=util-linux getconf=libc-bin
export PATH="$PATH:/usr/sbin:/sbin"
cores=(--proxy-core 1 --load-core 0)
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: WARNING: one CPU only: proxy and load share it; the run proves that every peer and" >&2
  echo "bench: scenario works, but its figures mean nothing (use a machine with 2 CPUs)" >&2
  cores=(--proxy-core 0 --load-core 0)
fi

# --- build --------------------------------------------------------------------
mkdir -p "$out"
bin="$(mktemp -d "${TMPDIR:-/tmp}/flowgate-bench-bin.XXXXXX")"
trap 'rm -rf "$bin"' EXIT
if [ -f .ci/build.sh ]; then
  FLOWGATE_OUT="$bin/flowgate" bash .ci/build.sh >&2
  [ -x "$bin/flowgate" ] || cp "$(ls -t bin/flowgate dist/flowgate 2>/dev/null | head -1)" "$bin/flowgate"
else
  go build -trimpath -o "$bin/flowgate" ./cmd/flowgate
fi
go build -trimpath -o "$bin/flowbench" ./test/bench/flowbench

# --- certificate: ECDSA P-256, the same for every peer --------------------------
cert="$bin/cert/cert.pem" key="$bin/cert/key.pem"
if ! "$bin/flowgate" cert issue --out "$bin/cert" --host localhost --host 127.0.0.1 \
      --key p256 --self-signed --days 30 >/dev/null 2>&1 || [ ! -s "$cert" ]; then
  echo "bench: flowgate cert issue failed; generating the certificate with openssl" >&2
  mkdir -p "$bin/cert"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$key" -out "$cert" 2>/dev/null
fi
# The text goes through a variable: "grep -q" in a pipe would stop reading at
# the first match, and under pipefail openssl's SIGPIPE would read as failure.
certtext="$(openssl x509 -in "$cert" -noout -text)"
grep -q "prime256v1\|P-256" <<<"$certtext" \
  || { echo "bench: certificate is not ECDSA P-256" >&2; exit 1; }

# 5,000 idle WebSockets need two sockets each in every proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# A packaged service must not hold resources during the run.
for svc in nginx haproxy caddy; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "bench: note: the system $svc service is running; it competes for CPU" >&2
  fi
done

# The orchestrator and its in-process load generators run on core 0.
taskset -c 0 "$bin/flowbench" run --flowgate "$bin/flowgate" --cert "$cert" --key "$key" \
  --out "$out" "${cores[@]}" "${args[@]}"
