#!/usr/bin/env bash
# Runs db_bench's workloads on Quarry's engine (`quarry bench engine`) and on RocksDB's
# db_bench, with the same key/value sizes, thread count and durability, in one run, and prints
# Quarry/RocksDB throughput ratios per workload.
#
#   benches/compare_rocksdb.sh                 # sync off, 1M x 1000-byte values
#   SYNC=1 NUM=50000 benches/compare_rocksdb.sh
#
# Environment: NUM (1000000), VALUE (1000), KEY (16), THREADS (1), SYNC (0|1, default 0),
# WORKLOADS (fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom), DIR (a scratch dir).
# Both engines use LZ4 and an 8 MiB block cache; values compress to half (db_bench's default).
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-1000000}
VALUE=${VALUE:-1000}
KEY=${KEY:-16}
THREADS=${THREADS:-1}
SYNC=${SYNC:-0}
WORKLOADS=${WORKLOADS:-fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom}
DIR=${DIR:-$(mktemp -d /tmp/quarry-vs-rocksdb.XXXXXX)}

if ! command -v db_bench >/dev/null 2>&1; then
  echo "installing RocksDB's db_bench (Debian package rocksdb-tools)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq rocksdb-tools; \
  else sudo apt-get update -qq && sudo apt-get install -y -qq rocksdb-tools; fi
fi

cargo build --release --quiet
QUARRY=target/release/quarry
sync_flag=""
[ "$SYNC" = 1 ] && sync_flag="--sync"

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(db_bench --version 2>&1 | head -1)"
echo "== num=$NUM value=$VALUE key=$KEY threads=$THREADS sync=$SYNC"

echo "== quarry"
$QUARRY bench engine --dir "$DIR/quarry" --workloads "$WORKLOADS" --num "$NUM" \
  --value-size "$VALUE" --key-size "$KEY" --threads "$THREADS" $sync_flag \
  --json "$DIR/quarry.json" | tee "$DIR/quarry.txt"

echo "== rocksdb"
# db_bench gives each thread --num operations; divide so both engines do NUM in total.
per_thread=$((NUM / THREADS))
db_bench --benchmarks="$WORKLOADS" --num="$per_thread" --value_size="$VALUE" --key_size="$KEY" \
  --threads="$THREADS" --sync="$SYNC" --db="$DIR/rocksdb" --compression_type=lz4 \
  --cache_size=8388608 --use_existing_db=0 --progress_reports=0 --stats_interval=0 \
  2>/dev/null | tr '\r' '\n' | grep -E '^[a-z]+ +:' | tee "$DIR/rocksdb.txt"

echo "== ratios (Quarry ops/s / RocksDB ops/s; above 1.0 means Quarry is faster)"
python3 - "$DIR/quarry.json" "$DIR/rocksdb.txt" <<'PY'
import json, re, sys
q = {r["name"]: r["ops_per_sec"] for r in json.load(open(sys.argv[1]))}
rk = {}
for line in open(sys.argv[2]):
    m = re.match(r"(\w+)\s*:.*?(\d+) ops/sec", line)
    if m:
        rk[m.group(1)] = float(m.group(2))
print(f"{'workload':<12} {'quarry ops/s':>14} {'rocksdb ops/s':>14} {'ratio':>7}")
for name, qv in q.items():
    rv = rk.get(name)
    ratio = f"{qv / rv:7.2f}" if rv else "    n/a"
    print(f"{name:<12} {qv:14.0f} {rv or 0:14.0f} {ratio}")
PY
echo "(scratch data in $DIR)"
