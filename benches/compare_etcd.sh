#!/usr/bin/env bash
# Runs the same lock-service measurements against a 3-replica Quarry lock group and a
# 3-node etcd in one run, with one driver (`quarry bench lock --target quarry|etcd`), and
# prints a table with the ratios.
#
#   benches/compare_etcd.sh                          # everything (several minutes)
#   MEASURE=latency,throughput benches/compare_etcd.sh
#
# Environment: MEASURE (all, or a comma list of latency, throughput, holder-death,
# leader-kill, leader-freeze, sessions), CYCLES (1000 per client), CLIENTS (8), TRIALS
# (10), SESSIONS (5000), HOLD (10 s), DIR (a scratch dir on a real disk: data and logs),
# KEEP (1 keeps DIR; it is kept anyway when a Quarry trial misses its bound), QUARRY (a
# prebuilt binary; default: build target/release/quarry),
# TARGETS ("quarry etcd"; "quarry" alone measures Quarry without starting etcd),
# QUARRY_FLAGS (extra lock-server flags, e.g. "--heartbeat-ms 50" to try other timings).
# Both services on loopback, fsync on, their own defaults: etcd heartbeat 100 ms, election
# 1000 ms; Quarry heartbeat 50 ms, disjoint election windows from 150 ms, lease 3 s,
# lock-delay 1 s. An etcd session is a lease with the same TTL as Quarry's lease (3 s),
# kept alive as often (every second).
set -euo pipefail
cd "$(dirname "$0")/.."

MEASURE=${MEASURE:-all}
CYCLES=${CYCLES:-1000}
CLIENTS=${CLIENTS:-8}
TRIALS=${TRIALS:-10}
SESSIONS=${SESSIONS:-5000}
HOLD=${HOLD:-10}
DIR=${DIR:-$(mktemp -d /tmp/quarry-vs-etcd.XXXXXX)}
TARGETS=${TARGETS:-quarry etcd}
LEASE_MS=3000
LOCK_DELAY_MS=1000
with_etcd() { [[ " $TARGETS " == *" etcd "* ]]; }

# etcd itself, and etcdctl (a separate package) to wait for the group to be healthy.
if with_etcd && ! { command -v etcd && command -v etcdctl; } >/dev/null 2>&1; then
  echo "installing etcd (Debian packages etcd-server and etcd-client)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq etcd-server etcd-client; \
  else sudo apt-get update -qq && sudo apt-get install -y -qq etcd-server etcd-client; fi
fi
if [ -z "${QUARRY:-}" ]; then
  cargo build --release --quiet --bin quarry
  QUARRY=target/release/quarry
fi
QUARRY=$(realpath "$QUARRY")

mkdir -p "$DIR/quarry/pids" "$DIR/etcd/pids"
cleanup() {
  for f in "$DIR"/quarry/pids/*.pid "$DIR"/etcd/pids/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -CONT "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done

  if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

# Nine free loopback ports: 3 Quarry replicas, 3 etcd client and 3 etcd peer ports.
read -r -a P <<<"$(python3 -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()')"

QPEERS="1=127.0.0.1:${P[0]},2=127.0.0.1:${P[1]},3=127.0.0.1:${P[2]}"
QADDRS="127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}"
EADDRS="127.0.0.1:${P[3]},127.0.0.1:${P[4]},127.0.0.1:${P[5]}"
ECLUSTER="e0=http://127.0.0.1:${P[6]},e1=http://127.0.0.1:${P[7]},e2=http://127.0.0.1:${P[8]}"

for i in 0 1 2; do
  (cd "$DIR/quarry" && exec "$QUARRY" lock-server --id $((i + 1)) --peers "$QPEERS" \
    --data "$DIR/quarry/d$i" --bootstrap --lease-ms $LEASE_MS --lock-delay-ms $LOCK_DELAY_MS \
    ${QUARRY_FLAGS:-} \
    >"$DIR/quarry/pids/$i.log" 2>&1) &
  echo $! >"$DIR/quarry/pids/$i.pid"; disown
  with_etcd || continue
  c=${P[$((3 + i))]}
  p=${P[$((6 + i))]}
  (cd "$DIR/etcd" && exec etcd --name "e$i" --data-dir "$DIR/etcd/e$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$ECLUSTER" --initial-cluster-state new --initial-cluster-token bench \
    --heartbeat-interval 100 --election-timeout 1000 \
    >"$DIR/etcd/pids/$i.log" 2>&1) &
  echo $! >"$DIR/etcd/pids/$i.pid"; disown
done

ready() { # waits up to 60 s for both groups to answer
  local end=$((SECONDS + 60))
  until "$QUARRY" lock --lock "$QADDRS" status >/dev/null 2>&1 \
      && { ! with_etcd || ETCDCTL_API=3 etcdctl --endpoints "$EADDRS" endpoint health >/dev/null 2>&1; }; do
    [ $SECONDS -lt $end ] || { echo "the groups did not come up; logs in $DIR"; KEEP=1; exit 1; }
    sleep 0.2
  done
}
ready

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $(with_etcd && etcd --version | head -1); quarry $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== cycles=$CYCLES clients=$CLIENTS trials=$TRIALS sessions=$SESSIONS hold=${HOLD}s lease=${LEASE_MS}ms lock-delay=${LOCK_DELAY_MS}ms"

if [ "$MEASURE" = all ]; then
  MEASURE=latency,throughput,holder-death,leader-kill,leader-freeze,sessions
fi
: >"$DIR/results.txt"
for m in ${MEASURE//,/ }; do
  for t in $TARGETS; do
    if [ $t = quarry ]; then addrs=$QADDRS; delay=$LOCK_DELAY_MS; else addrs=$EADDRS; delay=0; fi
    "$QUARRY" bench lock --target $t --lock "$addrs" --measure "$m" --cycles "$CYCLES" \
      --clients "$CLIENTS" --trials "$TRIALS" --sessions "$SESSIONS" --hold-secs "$HOLD" \
      --lease-ms $LEASE_MS --lock-delay-ms $delay --pid-dir "$DIR/$t/pids" \
      | tee -a "$DIR/results.txt"
  done
done

echo "== summary (ratio = etcd / Quarry for times and CPU, Quarry / etcd for throughput: above 1.0 means Quarry is better)"
python3 - "$DIR/results.txt" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(quarry|etcd) ([a-z-]+): (.*)", line.strip())
    if m:
        rows.setdefault(m.group(2), {})[m.group(1)] = m.group(3)
def num(text, pat):
    m = re.search(pat, text)
    return float(m.group(1)) if m else None
figures = [
    ("latency", "acquire+release p50 (ms)", r"p50 ([0-9.]+) ms", False),
    ("latency", "acquire+release p99 (ms)", r"p99 ([0-9.]+) ms", False),
    ("latency", "1 client (cycles/s)", r"([0-9.]+) cycles/s", True),
    ("throughput", "8 clients (cycles/s)", r"([0-9.]+) cycles/s", True),
    ("throughput", "8 clients p50 (ms)", r"p50 ([0-9.]+) ms", False),
    ("holder-death", "holder death -> next holder p50 (ms)", r"p50 ([0-9.]+) ms", False),
    ("holder-death", "holder death -> next holder max (ms)", r"max ([0-9.]+) ms", False),
    ("leader-kill", "leader kill -> next lock p50 (ms)", r"p50 ([0-9.]+) ms", False),
    ("leader-kill", "leader kill -> next lock max (ms)", r"max ([0-9.]+) ms", False),
    ("leader-freeze", "leader freeze -> next lock p50 (ms)", r"p50 ([0-9.]+) ms", False),
    ("leader-freeze", "leader freeze -> next lock max (ms)", r"max ([0-9.]+) ms", False),
    ("sessions", "sessions held: servers' CPU (% of a core)", r"CPU ([0-9.]+)%", False),
]
print(f"| {'measure':44} | {'Quarry':>9} | {'etcd':>9} | {'ratio':>6} |")
print(f"|{'-'*46}|{'-'*11}|{'-'*11}|{'-'*8}|")
for key, name, pat, higher_better in figures:
    r = rows.get(key)
    if not r:
        continue
    q, e = num(r.get("quarry", ""), pat), num(r.get("etcd", ""), pat)
    ratio = ""
    if q and e:
        ratio = f"{(q / e) if higher_better else (e / q):.2f}"
    fq = "-" if q is None else f"{q:.2f}" if q < 100 else f"{q:.0f}"
    fe = "-" if e is None else f"{e:.2f}" if e < 100 else f"{e:.0f}"
    print(f"| {name:44} | {fq:>9} | {fe:>9} | {ratio:>6} |")
PY

# A Quarry trial over its bound or before it keeps the replicas' logs for a post-mortem.
if grep -Eq '^quarry .*([1-9][0-9]* over|[1-9][0-9]* before)' "$DIR/results.txt"; then
  echo "== a Quarry trial missed its bound: keeping the replicas' logs ($DIR/quarry/pids)"
  KEEP=1
fi
