#!/usr/bin/env bash
# bench/clean_bench.sh: log cleaning on and off, in one run on one machine.
# For each setting (clean: --clean_threshold=$THRESHOLD, off: 0) a fresh
# faha-server (one node, --segment_mb=$SEGMENT_MB) takes ROUNDS x KEYS SETs of
# VALUE-byte values on KEYS random keys (redis-benchmark -r, pipelined), that
# is, the dataset overwritten about ROUNDS times. Reported per setting: write
# throughput and p99 (redis-benchmark), the largest and the final size of the
# log files (INFO log_file_bytes, sampled every second) against the live data
# (keys x the record size of one key and value), and cleaning's counters.
# REPEAT rounds interleave the settings; each cell is the median.
# Writes OUT_DIR/clean.md and OUT_DIR/clean.tsv (every run), prints the table.
#
#   bench/clean_bench.sh                                   # 1 GiB, 20 times
#   KEYS=100000 SEGMENT_MB=8 REPEAT=1 bench/clean_bench.sh  # a short one
# Environment: FAHA_BIN_DIR (build), KEYS (1000000), VALUE (1000), ROUNDS (20),
# SEGMENT_MB (64), THRESHOLD (0.5), CLIENTS (8), PIPELINE (16), REPEAT (1),
# OUT_DIR (docs/bench), DATA_PARENT (/tmp). The server listens on 127.0.0.1
# only and is stopped by pid.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bin="${FAHA_BIN_DIR:-$repo/build}"
KEYS="${KEYS:-1000000}"
VALUE="${VALUE:-1000}"
ROUNDS="${ROUNDS:-20}"
SEGMENT_MB="${SEGMENT_MB:-64}"
THRESHOLD="${THRESHOLD:-0.5}"
CLIENTS="${CLIENTS:-8}"
PIPELINE="${PIPELINE:-16}"
REPEAT="${REPEAT:-1}"
OUT_DIR="${OUT_DIR:-docs/bench}"
DATA_PARENT="${DATA_PARENT:-/tmp}"
source bench/lib.sh
bench_need clean_bench "$bin/faha-server" "$bin/faha-cli"
command -v redis-benchmark > /dev/null || { echo "clean_bench: redis-benchmark missing (deploy/install-deps.sh)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
bench_workdir "$DATA_PARENT" faha-clean
info() { "$bin/faha-cli" -p "$port" INFO | tr -d '\r' | sed -n "s/^$1://p"; }
# Bytes one key's record takes in the log: header, key ("key:" + 12 digits), value, padded to 8.
record=$(( (40 + 16 + VALUE + 7) / 8 * 8 ))

tsv="$OUT_DIR/clean.tsv"
echo -e "round\tsetting\tthroughput_ops_s\tp50_ms\tp99_ms\tkeys\tlive_bytes\tmax_log_bytes\tfinal_log_bytes\tmax_over_live\tfinal_over_live\tclean_passes\tsegments_cleaned\trecords_moved" > "$tsv"
start_time=$(date +%s)
for round in $(seq 1 "$REPEAT"); do
  for setting in clean off; do
    threshold=$THRESHOLD
    [ "$setting" = off ] && threshold=0
    port=$(bench_port)
    rm -rf "$work/data"
    "$bin/faha-server" --bind 127.0.0.1 --port "$port" --data_dir "$work/data" --metrics_port=-1 \
      --rdma=off --segment_mb="$SEGMENT_MB" --max_batch_kb=$(( SEGMENT_MB * 1024 / 2 > 8192 ? 8192 : SEGMENT_MB * 1024 / 2 )) \
      --clean_threshold="$threshold" > "$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do "$bin/faha-cli" -p "$port" PING > /dev/null 2>&1 && break; sleep 0.05; done
    # The log's size, sampled while the writes run.
    : > "$work/sizes"
    ( while kill -0 "$pid" 2> /dev/null; do info log_file_bytes >> "$work/sizes" 2> /dev/null || true; sleep 1; done ) &
    sampler=$!
    redis-benchmark -h 127.0.0.1 -p "$port" -t set -n $(( KEYS * ROUNDS )) -r "$KEYS" -d "$VALUE" \
      -c "$CLIENTS" -P "$PIPELINE" --csv > "$work/rb.csv" 2> "$work/rb.err"
    sleep 2  # let cleaning catch up with the last segments before the final size
    info log_file_bytes >> "$work/sizes"
    final=$(info log_file_bytes)
    keys=$(info db0 | sed -n 's/^keys=\([0-9]*\).*/\1/p')
    passes=$(info clean_passes); cleaned=$(info log_segments_cleaned); moved=$(info clean_records_moved)
    kill "$sampler" 2> /dev/null || true; wait "$sampler" 2> /dev/null || true
    kill "$pid"; wait "$pid" 2> /dev/null || true; pid=""
    max=$(sort -g "$work/sizes" | tail -1)
    live=$(( keys * record ))
    # "SET","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    IFS=, read -r _ rps _ _ p50 _ p99 _ < <(grep '^"SET"' "$work/rb.csv" | tr -d '"')
    echo -e "$round\t$setting\t$rps\t$p50\t$p99\t$keys\t$live\t$max\t$final\t$(awk -v a="$max" -v b="$live" 'BEGIN {printf "%.2f", a/b}')\t$(awk -v a="$final" -v b="$live" 'BEGIN {printf "%.2f", a/b}')\t$passes\t$cleaned\t$moved" >> "$tsv"
    echo "clean_bench: round $round $setting: $rps SET/s, p99 $p99 ms, log max $max final $final bytes for $live live" >&2
  done
done
elapsed=$(( $(date +%s) - start_time ))

col() { awk -F'\t' -v s="$1" -v c="$2" '$2==s {print $c}' "$tsv" | median; }
md="$OUT_DIR/clean.md"
{
  echo "# Log cleaning on and off (overwrites, one node)"
  echo
  echo "Machine: $(bench_machine); log under $DATA_PARENT ($(df -T "$DATA_PARENT" | awk 'NR==2 {print $2}'))."
  echo "Commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'). Command: \`KEYS=$KEYS VALUE=$VALUE ROUNDS=$ROUNDS SEGMENT_MB=$SEGMENT_MB THRESHOLD=$THRESHOLD CLIENTS=$CLIENTS PIPELINE=$PIPELINE REPEAT=$REPEAT bench/clean_bench.sh\` ($elapsed s)."
  echo "Each cell: median of $REPEAT run(s). $(( KEYS * ROUNDS )) SETs of $VALUE-byte values on $KEYS random keys (redis-benchmark -r, $CLIENTS clients, pipeline $PIPELINE), live data = keys x $record bytes."
  echo "clean: \`--clean_threshold=$THRESHOLD\`; off: \`--clean_threshold=0\`. Log sizes are INFO log_file_bytes (bytes of segment files), sampled every second."
  echo
  echo "| setting | SET/s | vs off | p50 (ms) | p99 (ms) | live data (MiB) | largest log (MiB) | largest / live | final log / live | segments cleaned |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  off_tp=$(col off 3)
  for setting in clean off; do
    tp=$(col "$setting" 3)
    printf '| %s | %.0f | %s | %s | %s | %.0f | %.0f | %s | %s | %s |\n' "$setting" "$tp" \
      "$(awk -v a="$tp" -v b="$off_tp" 'BEGIN {if (b == 0) print "-"; else printf "%.2f", a/b}')" \
      "$(col "$setting" 4)" "$(col "$setting" 5)" "$(awk -v b="$(col "$setting" 7)" 'BEGIN {print b/1048576}')" \
      "$(awk -v b="$(col "$setting" 8)" 'BEGIN {print b/1048576}')" "$(col "$setting" 10)" "$(col "$setting" 11)" "$(col "$setting" 13)"
  done
} > "$md"
cat "$md"
