#!/usr/bin/env bash
# Installs what the tests need and a fresh machine may lack. Idempotent; prints what it does.
set -euo pipefail
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "installing cargo-nextest (from crates.io)"
  cargo install --locked cargo-nextest
fi
