#!/usr/bin/env bash
# Runs db_bench's workloads on Quarry's engine (`quarry bench engine`) and on RocksDB's
# db_bench, with the same key/value sizes, thread count, durability and table options, back
# to back in one run, RUNS times, and prints per workload the median Quarry and RocksDB
# throughput, their ratio, and each engine's write amplification.
#
#   benches/compare_rocksdb.sh                                    # sync off, 1M x 1000 B
#   SYNC=1 NUM=4000 THREADS=8 WORKLOADS=fillseq,fillrandom,overwrite benches/compare_rocksdb.sh
#
# Environment: NUM (1000000), VALUE (1000), KEY (16), THREADS (1), SYNC (0|1, default 0),
# RUNS (3), WORKLOADS (fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom),
# DIR (a scratch dir), QUARRY (a prebuilt binary; default: build target/release/quarry),
# COMPACTION (Quarry's policy: size-tiered (default) or leveled; RocksDB is always leveled).
# Both engines: LZ4, 4 KiB data blocks, an 8 MiB block cache, a 64 MiB memtable (db_bench's
# defaults), values that compress to half (db_bench's compression_ratio=0.5). Quarry also
# writes 10-bit Bloom filters (db_bench writes none by default).
# Write amplification = bytes written to SSTables by flushes and compactions / bytes of
# writes accepted, summed over the run's workloads (db_bench: rocksdb.flush.write.bytes +
# rocksdb.compact.write.bytes over rocksdb.bytes.written).
set -euo pipefail
cd "$(dirname "$0")/.."

NUM=${NUM:-1000000}
VALUE=${VALUE:-1000}
KEY=${KEY:-16}
THREADS=${THREADS:-1}
SYNC=${SYNC:-0}
RUNS=${RUNS:-3}
WORKLOADS=${WORKLOADS:-fillseq,fillrandom,overwrite,readrandom,readseq,seekrandom}
DIR=${DIR:-$(mktemp -d /tmp/quarry-vs-rocksdb.XXXXXX)}
COMPACTION=${COMPACTION:-size-tiered}

if ! command -v db_bench >/dev/null 2>&1; then
  echo "installing RocksDB's db_bench (Debian package rocksdb-tools)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq rocksdb-tools; \
  else sudo apt-get update -qq && sudo apt-get install -y -qq rocksdb-tools; fi
fi

if [ -z "${QUARRY:-}" ]; then
  cargo build --release --quiet --bin quarry
  QUARRY=target/release/quarry
fi
sync_flag=""
[ "$SYNC" = 1 ] && sync_flag="--sync"

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg); $(db_bench --version 2>&1 | head -1)"
echo "== num=$NUM value=$VALUE key=$KEY threads=$THREADS sync=$SYNC runs=$RUNS workloads=$WORKLOADS quarry compaction=$COMPACTION"

# db_bench gives each thread --num operations; divide so both engines do NUM in total.
per_thread=$((NUM / THREADS))
for run in $(seq 1 "$RUNS"); do
  echo "== run $run: quarry"
  rm -rf "$DIR/quarry"
  $QUARRY bench engine --dir "$DIR/quarry" --workloads "$WORKLOADS" --num "$NUM" \
    --value-size "$VALUE" --key-size "$KEY" --threads "$THREADS" $sync_flag \
    --block-size 4096 --cache-size 8388608 --memtable-size 67108864 --compaction "$COMPACTION" \
    --json "$DIR/quarry.$run.json" | tee "$DIR/quarry.$run.txt"
  rm -rf "$DIR/quarry"
  echo "== run $run: rocksdb"
  db_bench --benchmarks="$WORKLOADS" --num="$per_thread" --value_size="$VALUE" --key_size="$KEY" \
    --threads="$THREADS" --sync="$SYNC" --db="$DIR/rocksdb" --compression_type=lz4 \
    --compression_ratio=0.5 --block_size=4096 --cache_size=8388608 \
    --write_buffer_size=67108864 --use_existing_db=0 --statistics=1 \
    --progress_reports=0 --stats_interval=0 2>/dev/null | tr '\r' '\n' \
    > "$DIR/rocksdb.$run.full.txt"
  grep -E '^[a-z]+ +:' "$DIR/rocksdb.$run.full.txt" | tee "$DIR/rocksdb.$run.txt"
  rm -rf "$DIR/rocksdb"
done

echo "== medians of $RUNS runs (ratio = Quarry ops/s / RocksDB ops/s; above 1.0 means Quarry is faster)"
python3 - "$DIR" "$RUNS" <<'PY'
import json, re, statistics, sys
d, runs = sys.argv[1], int(sys.argv[2])
q, r, qwa, rwa = {}, {}, [], []
for i in range(1, runs + 1):
    for row in json.load(open(f"{d}/quarry.{i}.json")):
        q.setdefault(row["name"], []).append(row["ops_per_sec"])
    m = re.search(r"write amplification[^:]*: ([0-9.]+)", open(f"{d}/quarry.{i}.txt").read())
    if m:
        qwa.append(float(m.group(1)))
    stats = {}
    for line in open(f"{d}/rocksdb.{i}.full.txt"):
        m = re.match(r"(\w+)\s*:.*?([0-9.]+) ops/sec", line)
        if m:
            r.setdefault(m.group(1), []).append(float(m.group(2)))
        m = re.match(r"(rocksdb\.[a-z.]+) COUNT : (\d+)", line)
        if m:
            stats[m.group(1)] = int(m.group(2))
    user = stats.get("rocksdb.bytes.written", 0)
    if user:
        sst = stats.get("rocksdb.flush.write.bytes", 0) + stats.get("rocksdb.compact.write.bytes", 0)
        rwa.append(sst / user)
med = lambda xs: statistics.median(xs) if xs else 0.0
print(f"{'workload':<12} {'quarry ops/s':>13} {'rocksdb ops/s':>14} {'ratio':>6}   quarry runs / rocksdb runs")
for name, qs in q.items():
    rs = r.get(name, [])
    qv, rv = med(qs), med(rs)
    ratio = f"{qv / rv:6.2f}" if rv else "   n/a"
    runs_s = " ".join(f"{x:.0f}" for x in qs) + " / " + " ".join(f"{x:.0f}" for x in rs)
    print(f"{name:<12} {qv:13.0f} {rv:14.0f} {ratio}   {runs_s}")
print(f"write amplification (median): quarry {med(qwa):.2f}, rocksdb {med(rwa):.2f}")
PY
echo "(scratch data in $DIR)"
