#!/usr/bin/env bash
# bench/hot_bench.sh: the hot layer on and off, in one run on one machine.
# For each setting (hot: --hot_cache_bytes=$HOT_BYTES, off: --hot_cache_bytes=0)
# a fresh faha-server (one node) is loaded with RECORDS 1 KB records, then
# YCSB workloads B (95% reads) and C (reads only) run with zipfian (0.99) and
# uniform requests, OPS operations each, THREADS client threads. REPEAT rounds
# interleave the settings; each cell is the median. Besides throughput and p99,
# it reports the log record reads per GET that found its key, from the
# server's INFO counters key_log_reads and key_hot_hits taken around each run
# (a hot hit reads no log at all).
# Writes OUT_DIR/hot.md and OUT_DIR/hot.tsv (every run) and prints the table.
#
#   bench/hot_bench.sh
#   RECORDS=20000 OPS=20000 REPEAT=1 bench/hot_bench.sh   # a short one
# Environment: FAHA_BIN_DIR (build), RECORDS (100000), OPS (200000),
# THREADS (8), REPEAT (3), HOT_BYTES (67108864), OUT_DIR (docs/bench),
# DATA_PARENT (/tmp). The server listens on 127.0.0.1 only and is stopped by pid.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bin="${FAHA_BIN_DIR:-$repo/build}"
RECORDS="${RECORDS:-100000}"
OPS="${OPS:-200000}"
THREADS="${THREADS:-8}"
REPEAT="${REPEAT:-3}"
HOT_BYTES="${HOT_BYTES:-67108864}"
OUT_DIR="${OUT_DIR:-docs/bench}"
DATA_PARENT="${DATA_PARENT:-/tmp}"
source bench/lib.sh
bench_need hot_bench "$bin/faha-server" "$bin/faha-bench" "$bin/faha-cli"
mkdir -p "$OUT_DIR"
bench_workdir "$DATA_PARENT" faha-hot
info() { "$bin/faha-cli" -p "$port" INFO | tr -d '\r' | sed -n "s/^$1://p"; }
field() { sed -n "s/^\[$2\], $3, //p" "$1" | head -1; }

tsv="$OUT_DIR/hot.tsv"
echo -e "round\tsetting\tworkload\tdistribution\tthroughput_ops_s\tread_p50_us\tread_p99_us\tlog_reads_per_get\thot_keys\terrors" > "$tsv"
start_time=$(date +%s)
for round in $(seq 1 "$REPEAT"); do
  for setting in hot off; do
    bytes=$HOT_BYTES
    [ "$setting" = off ] && bytes=0
    port=$(bench_port)
    rm -rf "$work/data"
    "$bin/faha-server" --bind 127.0.0.1 --port "$port" --data_dir "$work/data" --metrics_port=-1 \
      --rdma=off --hot_cache_bytes="$bytes" > "$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do "$bin/faha-cli" -p "$port" PING > /dev/null 2>&1 && break; sleep 0.05; done
    common=(-p "target=native://127.0.0.1:$port" -p "recordcount=$RECORDS" -p "operationcount=$OPS"
            -p "threadcount=$THREADS" -p status.interval=0)
    "$bin/faha-bench" load -P bench/workloads/workloadb "${common[@]}" > "$work/load.txt"
    for w in b c; do
      for dist in zipfian uniform; do
        l0=$(info key_log_reads); h0=$(info key_hot_hits)
        "$bin/faha-bench" run -P "bench/workloads/workload$w" "${common[@]}" \
          -p "requestdistribution=$dist" > "$work/run.txt"
        l1=$(info key_log_reads); h1=$(info key_hot_hits)
        per_get=$(awk -v l=$((l1 - l0)) -v h=$((h1 - h0)) 'BEGIN {printf "%.3f", (l + h) ? l / (l + h) : 0}')
        errors=$(awk -F', ' '/^\[ALL\], Return=(ERROR|NOT_FOUND|UNEXPECTED_STATE), / {e += $3} END {print e + 0}' "$work/run.txt")
        echo -e "$round\t$setting\t$w\t$dist\t$(field "$work/run.txt" OVERALL 'Throughput(ops\/sec)')\t$(field "$work/run.txt" READ '50thPercentileLatency(us)')\t$(field "$work/run.txt" READ '99thPercentileLatency(us)')\t$per_get\t$(info hot_cache_keys)\t$errors" >> "$tsv"
        echo "hot_bench: round $round $setting workload$w $dist: $(tail -1 "$tsv" | cut -f5) ops/s, $per_get log reads per GET" >&2
      done
    done
    kill "$pid"; wait "$pid" 2> /dev/null || true; pid=""
  done
done
elapsed=$(( $(date +%s) - start_time ))

col() { awk -F'\t' -v s="$1" -v w="$2" -v d="$3" -v c="$4" '$2==s && $3==w && $4==d {print $c}' "$tsv" | median; }
md="$OUT_DIR/hot.md"
{
  echo "# The hot layer on and off (YCSB B and C, one node)"
  echo
  echo "Machine: $(bench_machine); log under $DATA_PARENT ($(df -T "$DATA_PARENT" | awk 'NR==2 {print $2}'))."
  echo "Commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'). Command: \`RECORDS=$RECORDS OPS=$OPS THREADS=$THREADS REPEAT=$REPEAT HOT_BYTES=$HOT_BYTES bench/hot_bench.sh\` ($elapsed s)."
  echo "Each cell: median of $REPEAT run(s); 1 KB records, $THREADS client threads (native protocol, one request at a time each), server and client on 127.0.0.1."
  echo "hot: \`--hot_cache_bytes=$HOT_BYTES\`; off: \`--hot_cache_bytes=0\`. Log reads per GET: key_log_reads / (key_log_reads + key_hot_hits) over the run."
  echo
  echo "| workload | requests | setting | throughput (ops/s) | vs off | read p50 (us) | read p99 (us) | log reads per GET | keys held |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
  for w in b c; do
    for dist in zipfian uniform; do
      off_tp=$(col off "$w" "$dist" 5)
      for setting in hot off; do
        tp=$(col "$setting" "$w" "$dist" 5)
        ratio=$(awk -v a="$tp" -v b="$off_tp" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a/b}')
        printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$w" "$dist" "$setting" "$tp" "$ratio" \
          "$(col "$setting" "$w" "$dist" 6)" "$(col "$setting" "$w" "$dist" 7)" \
          "$(col "$setting" "$w" "$dist" 8)" "$(col "$setting" "$w" "$dist" 9)"
      done
    done
  done
} > "$md"
cat "$md"
