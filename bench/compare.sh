#!/usr/bin/env bash
# bench/compare.sh: faha against Redis on YCSB workloads, in one run on one
# machine, with faha-bench as the one client for every system:
#   faha-0          faha-server alone (every write durable in its log before the reply)
#   faha-2          faha primary + 2 backups (durable on all three before the reply)
#   redis-none      redis-server, no persistence (--save '' --appendonly no): the ceiling
#   redis-always    redis-server --appendonly yes --appendfsync always
#   redis-always-2  that + 2 replicas (also appendfsync always); each write is SET +
#                   WAITAOF 1 2 (Redis >= 7.2) or, on older Redis (Debian 12 has 7.0),
#                   SET + WAIT 2: the primary fsynced, both replicas received it
# For each system: start it fresh, load RECORDS records (1 KB), then run each of
# WORKLOADS (default a b c f d, YCSB's recommended order: d inserts) for OPS
# operations with THREADS client threads; REPEAT rounds, interleaved across the
# systems, and the median of each (system, workload) figure is reported.
# Writes OUT_DIR/compare.md (table: throughput, p50, p99 of all operations, and
# throughput as a ratio to redis-none), OUT_DIR/compare.tsv (every run) and,
# with gnuplot, OUT_DIR/throughput.svg and OUT_DIR/p99.svg. Prints the table.
#
#   bench/compare.sh                                  # the full comparison
#   RECORDS=20000 OPS=20000 REPEAT=1 bench/compare.sh # a short one
# Environment: FAHA_BIN_DIR (build), RECORDS (100000), OPS (100000), THREADS (8),
# REPEAT (3), WORKLOADS ("a b c f d"), SYSTEMS (all five), OUT_DIR (docs/bench),
# DATA_PARENT (/tmp: where every system keeps its data; the same disk for all).
# Every server listens on 127.0.0.1 only; the script stops the ones it started.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bin="${FAHA_BIN_DIR:-$repo/build}"
RECORDS="${RECORDS:-100000}"
OPS="${OPS:-100000}"
THREADS="${THREADS:-8}"
REPEAT="${REPEAT:-3}"
WORKLOADS="${WORKLOADS:-a b c f d}"
SYSTEMS="${SYSTEMS:-faha-0 faha-2 redis-none redis-always redis-always-2}"
OUT_DIR="${OUT_DIR:-docs/bench}"
DATA_PARENT="${DATA_PARENT:-/tmp}"
source bench/lib.sh
bench_need compare "$bin/faha-server" "$bin/faha-bench" "$bin/faha-cli"
command -v redis-server > /dev/null || { echo "compare: redis-server missing (deploy/install-deps.sh)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
work="$(mktemp -d "$DATA_PARENT/faha-compare.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
  [ -d "$work/cluster" ] && "$repo/deploy/local-cluster" stop --dir "$work/cluster" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A base port with P..P+2, their +100 replication and +2000 metrics ports free.
pick_port() { bench_port 1 2 100 101 102 2000 2001 2002; }
wait_ping() {  # port [log]
  for _ in $(seq 1 600); do
    [ "$(redis-cli -p "$1" PING 2> /dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  echo "compare: nothing answers on port $1 within 30 s" >&2
  [ -n "${2:-}" ] && tail -n 20 "$2" >&2
  return 1
}
redis_version="$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')"
has_waitaof() { [ "$(printf '%s\n' 7.2 "$redis_version" | sort -V | head -1)" = 7.2 ]; }

# start SYSTEM: sets target and extra (faha-bench -p arguments).
start() {
  local sys="$1" p
  p="$(pick_port)"
  rm -rf "$work/data" && mkdir -p "$work/data"
  extra=()
  case "$sys" in
    faha-0)
      "$bin/faha-server" --bind 127.0.0.1 --port "$p" --data_dir "$work/data/faha" \
        --metrics_port=-1 --rdma=off > "$work/server.log" 2>&1 &
      pids+=($!); wait_ping "$p" "$work/server.log"; target="native://127.0.0.1:$p" ;;
    faha-2)
      FAHA_BIN_DIR="$bin" "$repo/deploy/local-cluster" start --backups 2 --dir "$work/cluster" \
        --port "$p" -- --rdma=off > /dev/null
      target="native://127.0.0.1:$p" ;;
    redis-none)
      redis-server --port "$p" --bind 127.0.0.1 --dir "$work/data" --save '' --appendonly no \
        > "$work/server.log" 2>&1 &
      pids+=($!); wait_ping "$p" "$work/server.log"; target="resp://127.0.0.1:$p" ;;
    redis-always | redis-always-2)
      local n=0
      [ "$sys" = redis-always-2 ] && n=2
      for i in $(seq 0 "$n"); do
        mkdir -p "$work/data/r$i"
        local repl=()
        [ "$i" -gt 0 ] && repl=(--replicaof 127.0.0.1 "$p")
        redis-server --port $((p + i)) --bind 127.0.0.1 --dir "$work/data/r$i" --save '' \
          --appendonly yes --appendfsync always "${repl[@]}" > "$work/server$i.log" 2>&1 &
        pids+=($!); wait_ping $((p + i)) "$work/server$i.log"
      done
      if [ "$n" -gt 0 ]; then
        for _ in $(seq 1 200); do
          [ "$(redis-cli -p "$p" INFO replication | tr -d '\r' | sed -n 's/^connected_slaves://p')" = 2 ] && break
          sleep 0.05
        done
        if has_waitaof; then extra=(-p redis.waitaof.local=1 -p redis.waitaof.replicas=2)
        else extra=(-p redis.wait.replicas=2); fi
      fi
      target="resp://127.0.0.1:$p" ;;
    *) echo "compare: unknown system $sys" >&2; exit 2 ;;
  esac
}
stop() {
  for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  pids=()
  if [ -d "$work/cluster" ]; then
    "$repo/deploy/local-cluster" stop --dir "$work/cluster" > /dev/null 2>&1 || true
    rm -rf "$work/cluster"
  fi
}
field() {  # report op field
  sed -n "s/^\[$2\], $3, //p" "$1" | head -1
}

tsv="$OUT_DIR/compare.tsv"
echo -e "round\tsystem\tworkload\tthroughput_ops_s\tp50_us\tp99_us\terrors" > "$tsv"
start_time=$(date +%s)
for round in $(seq 1 "$REPEAT"); do
  for sys in $SYSTEMS; do
    start "$sys"
    common=(-p "target=$target" -p "recordcount=$RECORDS" -p "operationcount=$OPS"
            -p "threadcount=$THREADS" -p status.interval=0 "${extra[@]}")
    "$bin/faha-bench" load -P bench/workloads/workloada "${common[@]}" > "$work/load.txt" 2> "$work/load.err" \
      || { cat "$work/load.err" >&2; exit 1; }
    for w in $WORKLOADS; do
      "$bin/faha-bench" run -P "bench/workloads/workload$w" "${common[@]}" > "$work/run.txt" 2> "$work/run.err" \
        || { cat "$work/run.err" >&2; exit 1; }
      errors=$(awk -F', ' '/^\[ALL\], Return=(ERROR|NOT_FOUND|UNEXPECTED_STATE), / {e += $3} END {print e + 0}' "$work/run.txt")
      echo -e "$round\t$sys\t$w\t$(field "$work/run.txt" OVERALL 'Throughput(ops\/sec)')\t$(field "$work/run.txt" ALL '50thPercentileLatency(us)')\t$(field "$work/run.txt" ALL '99thPercentileLatency(us)')\t${errors:-0}" >> "$tsv"
      echo "compare: round $round $sys workload$w: $(tail -1 "$tsv" | cut -f4) ops/s" >&2
    done
    stop
  done
done
elapsed=$(( $(date +%s) - start_time ))

# Medians per (system, workload), then the table.
md="$OUT_DIR/compare.md"
data="$OUT_DIR/compare.dat"
{
  echo "# faha vs Redis, YCSB workloads (faha-bench)"
  echo
  echo "Machine: $(bench_machine); data under $DATA_PARENT ($(df -T "$DATA_PARENT" | awk 'NR==2 {print $2}'))."
  echo "Versions: faha $("$bin/faha-server" --version 2> /dev/null | head -1 || echo '?'), Redis $redis_version, commit $(git rev-parse --short HEAD 2> /dev/null || echo '?')."
  echo "Command: \`RECORDS=$RECORDS OPS=$OPS THREADS=$THREADS REPEAT=$REPEAT WORKLOADS=\"$WORKLOADS\" bench/compare.sh\` ($elapsed s)."
  echo "Each cell: median of $REPEAT run(s); 1 KB records, $THREADS client threads, one synchronous request at a time per thread, all on 127.0.0.1."
  echo "Latencies: all operations of the run phase together, in microseconds. Ratio: throughput / redis-none's."
  echo
  echo "| workload | system | throughput (ops/s) | p50 (us) | p99 (us) | vs redis-none | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|"
} > "$md"
: > "$data"
for w in $WORKLOADS; do
  base=$(awk -F'\t' -v w="$w" '$2=="redis-none" && $3==w {print $4}' "$tsv" | median)
  row="$w"
  for sys in $SYSTEMS; do
    tp=$(awk -F'\t' -v s="$sys" -v w="$w" '$2==s && $3==w {print $4}' "$tsv" | median)
    p50=$(awk -F'\t' -v s="$sys" -v w="$w" '$2==s && $3==w {print $5}' "$tsv" | median)
    p99=$(awk -F'\t' -v s="$sys" -v w="$w" '$2==s && $3==w {print $6}' "$tsv" | median)
    err=$(awk -F'\t' -v s="$sys" -v w="$w" '$2==s && $3==w {e+=$7} END {print e+0}' "$tsv")
    ratio="-"
    [ "$base" != "-" ] && [ "$tp" != "-" ] && ratio=$(awk -v a="$tp" -v b="$base" 'BEGIN {printf "%.2f", a/b}')
    printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "$w" "$sys" "$tp" "$p50" "$p99" "$ratio" "$err" >> "$md"
    row="$row $tp $p99"
  done
  echo "$row" >> "$data"
done
# faha's throughput as a ratio to each Redis configuration (those that ran).
med() { awk -F'\t' -v s="$1" -v w="$2" '$2==s && $3==w {print $4}' "$tsv" | median; }
pairs=()
for f in faha-0 faha-2; do
  for r in redis-none redis-always redis-always-2; do
    case " $SYSTEMS " in *" $f "*) case " $SYSTEMS " in *" $r "*) pairs+=("$f/$r") ;; esac ;; esac
  done
done
if [ ${#pairs[@]} -gt 0 ]; then
  {
    echo
    echo "faha's throughput as a ratio to each Redis configuration's (medians):"
    echo
    printf '| workload |'; for pr in "${pairs[@]}"; do printf ' %s |' "${pr/\// \/ }"; done; echo
    printf '|---|'; for _ in "${pairs[@]}"; do printf -- '---:|'; done; echo
    for w in $WORKLOADS; do
      printf '| %s |' "$w"
      for pr in "${pairs[@]}"; do
        a=$(med "${pr%/*}" "$w"); b=$(med "${pr#*/}" "$w")
        printf ' %s |' "$(awk -v a="$a" -v b="$b" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a/b}')"
      done
      echo
    done
  } >> "$md"
fi
cat >> "$md" << EOF

What each configuration guarantees for an acknowledged write:
- faha-0: in faha's log (fdatasync, or cache-line flush on DAX) before the reply; lost with the disk.
- faha-2: in the logs of the primary and both backups before the reply; a backup takes over
  (with --etcd, automatically) without losing it.
- redis-none: nothing; lost on any restart.
- redis-always: in the AOF, fsynced, before the reply (appendfsync always); lost with the disk.
- redis-always-2: that, and $(if has_waitaof; then echo "fsynced by both replicas (WAITAOF 1 2)"; else echo "received by both replicas (WAIT 2; Redis $redis_version has no WAITAOF)"; fi)
  before the reply; replication is asynchronous, so a failover may still lose it.
EOF
if command -v gnuplot > /dev/null; then
  n=0; cols=""; for sys in $SYSTEMS; do n=$((n + 1)); done
  plot() {  # file ylabel column-offset
    local i=0 parts=()
    for sys in $SYSTEMS; do
      parts+=("'$data' using $((2 + 2 * i + $3)):xtic(1) title '$sys'")
      i=$((i + 1))
    done
    gnuplot << EOF
set terminal svg size 900,480 dynamic font "sans,12"
set output '$1'
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set ylabel '$2'
set xlabel 'YCSB workload'
set key outside right
set grid ytics
plot $(IFS=,; echo "${parts[*]}")
EOF
  }
  plot "$OUT_DIR/throughput.svg" "throughput (ops/s)" 0
  plot "$OUT_DIR/p99.svg" "p99 latency (us)" 1
  echo "" >> "$md"
  echo "![throughput](throughput.svg) ![p99](p99.svg)" >> "$md"
fi
cat "$md"
