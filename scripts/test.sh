#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine
# (scripts/setup-tools.sh: cargo-nextest), then runs every test of the workspace in release
# mode. Extra arguments go to nextest (e.g. `scripts/test.sh --test cluster_failover`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-tools.sh
exec cargo nextest run --workspace --release "$@"
