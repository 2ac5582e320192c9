#!/usr/bin/env bash
# Installs what the tests need and a fresh machine may lack. Idempotent; prints what it does.
set -euo pipefail
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "installing cargo-nextest (from crates.io)"
  cargo install --locked cargo-nextest
fi
# The chaos suite cuts partitions with `ip rule` inside a network namespace; without `ip`
# its partition scenarios print SKIPPED (see docs/reliability.md). Install it where we can.
if ! command -v ip >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing iproute2 (Debian package, for the chaos suite's partitions)"
    apt-get install -y iproute2 || {
      apt-get update && apt-get install -y iproute2
    } || echo "warning: iproute2 not installed: chaos partition scenarios will be SKIPPED"
  else
    echo "warning: no 'ip' command and no root apt-get: chaos partition scenarios will be SKIPPED"
  fi
fi
