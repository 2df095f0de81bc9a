#!/usr/bin/env bash
# Install Debian packages the tests need (chromium for the UI tests, pgbouncer for the
# scale-out test, wrk for benchmarks) when their command is missing. Quiet and quick when
# everything is already there. Daemons such as pgbouncer live in /usr/sbin, which is not
# on every user's PATH, so that counts as present too.
set -euo pipefail
missing=()
for package in "$@"; do
  command -v "$package" >/dev/null 2>&1 || [[ -x /usr/sbin/$package ]] || missing+=("$package")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "Missing system packages: ${missing[*]}. Install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
