#!/usr/bin/env bash
# install-debian.sh CMD=PACKAGE ... installs, from Debian, the package of each
# command that is not on PATH (with /usr/sbin and /sbin searched too). Used by
# test/run.sh and test/bench/run.sh. Packaged services (nginx, haproxy, caddy)
# are kept from starting on install, so they never take the tests' ports.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
missing=()
for pair in "$@"; do
  cmd=${pair%%=*} pkg=${pair#*=}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
echo "installing Debian packages: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-debian.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
$sudo apt-get install -y -q --no-install-recommends ca-certificates "${missing[@]}"
