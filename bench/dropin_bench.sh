#!/usr/bin/env bash
# bench/dropin_bench.sh: what issue 20's commands cost, against Redis on the same
# machine at the same durability (every write durable before its reply:
# faha-server alone, redis-server --appendonly yes --appendfsync always), in one
# run, REPEAT rounds alternating the systems, medians reported:
#   1. transactions: SETs/s through MULTI + 10 SETs + EXEC against 10 pipelined
#      SETs (faha-txn-bench, 50 clients, 4 groups in flight each, 100-byte
#      values), and the server's CPU per SET (/proc/PID/stat);
#   2. redis-benchmark -t set,get,incr,mset (50 clients, -P 16, 100-byte values);
#   3. EVALSHA of a script that writes 3 keys (redis-benchmark, 50 clients, -P 16).
# With OLD_BIN_DIR (a build of an earlier commit), faha-server from there runs
# SET and GET too, alternating with this one: the cost of the change.
# Writes OUT (docs/bench/dropin.md) and prints it.
#   FAHA_BIN_DIR=build-release bench/dropin_bench.sh
# Environment: FAHA_BIN_DIR, OLD_BIN_DIR, REPEAT (3), SECONDS_EACH (5), N (200000:
# requests per redis-benchmark test), OUT, DATA_PARENT (/tmp).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bin="${FAHA_BIN_DIR:-$repo/build}"
REPEAT="${REPEAT:-3}"
SECONDS_EACH="${SECONDS_EACH:-5}"
N="${N:-200000}"
OUT="${OUT:-docs/bench/dropin.md}"
DATA_PARENT="${DATA_PARENT:-/tmp}"
source bench/lib.sh
bench_need dropin "$bin/faha-server" "$bin/faha-txn-bench"
[ -z "${OLD_BIN_DIR:-}" ] || bench_need dropin "$OLD_BIN_DIR/faha-server"
command -v redis-server > /dev/null || { echo "dropin: redis-server missing" >&2; exit 1; }
bench_workdir "$DATA_PARENT" dropin
results="$work/results.tsv"  # system, measure, value
: > "$results"

port=""
start() {  # start SYSTEM: faha, faha-old or redis-always, fresh, on a new port
  port="$(bench_port)"
  rm -rf "$work/data" && mkdir -p "$work/data"
  case "$1" in
    faha) "$bin/faha-server" --port "$port" --data_dir "$work/data" --metrics_port=-1 \
            > "$work/server.log" 2>&1 & ;;
    faha-old) "$OLD_BIN_DIR/faha-server" --port "$port" --data_dir "$work/data" \
                --metrics_port=-1 > "$work/server.log" 2>&1 & ;;
    redis-always) redis-server --port "$port" --dir "$work/data" --save "" --appendonly yes \
                    --appendfsync always > "$work/server.log" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$port" ping > /dev/null 2>&1 && return
    sleep 0.1
  done
  echo "dropin: $1 did not start" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; pid=""; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$results"; }

txn_round() {  # SYSTEM
  local mode line sets t0 t1 tck
  tck="$(getconf CLK_TCK)"
  for mode in multi pipelined; do
    start "$1"
    t0="$(cpu_ticks)"
    line="$("$bin/faha-txn-bench" --port "$port" --mode "$mode" --seconds "$SECONDS_EACH")"
    t1="$(cpu_ticks)"
    stop
    sets="$(sed 's/.* sets=\([0-9]*\).*/\1/' <<< "$line")"
    record "$1" "txn-$mode-sets/s" "$(sed 's/.*sets_per_sec=\([0-9]*\).*/\1/' <<< "$line")"
    record "$1" "txn-$mode-cpu-us/set" "$(awk -v d=$((t1 - t0)) -v t="$tck" -v s="$sets" \
      'BEGIN {printf "%.2f", d / t * 1e6 / s}')"
  done
}

rb_round() {  # SYSTEM TESTS: redis-benchmark rps per test
  start "$1"
  redis-benchmark -p "$port" -n "$N" -c 50 -P 16 -d 100 -r 100000 -t "$2" --csv 2> /dev/null |
    tr -d '"' | awk -F, 'NR > 1 {print $1 "\t" $2}' |
    while IFS=$'\t' read -r test rps; do record "$1" "$test" "$rps"; done
  if [ "$2" != "set,get" ]; then
    local sha
    sha="$(redis-cli -p "$port" script load \
      "redis.call('set', KEYS[1], ARGV[1]) redis.call('set', KEYS[2], ARGV[1]) return redis.call('incr', KEYS[3])")"
    redis-benchmark -p "$port" -n "$N" -c 50 -P 16 -r 100000 --csv \
      evalsha "$sha" 3 "a:__rand_int__" "b:__rand_int__" "c:__rand_int__" v 2> /dev/null |
      tr -d '"' | awk -F, 'NR > 1 {print $2}' | while read -r rps; do record "$1" "EVALSHA (3 keys)" "$rps"; done
  fi
  stop
}

for round in $(seq "$REPEAT"); do
  echo "dropin: round $round of $REPEAT" >&2
  for sys in faha redis-always; do
    txn_round "$sys"
    rb_round "$sys" "set,get,incr,mset"
  done
  if [ -n "${OLD_BIN_DIR:-}" ]; then
    rb_round faha-old "set,get"
    rb_round faha "set,get"
  fi
done

med() {  # SYSTEM MEASURE
  awk -F'\t' -v s="$1" -v m="$2" '$1 == s && $2 == m {print $3}' "$results" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "-"; else printf "%.2f", a / b}'; }
{
  echo "# Issue 20's commands: cost, against Redis at the same durability"
  echo
  echo "Machine: $(bench_machine). Command: \`REPEAT=$REPEAT SECONDS_EACH=$SECONDS_EACH N=$N${OLD_BIN_DIR:+ OLD_BIN_DIR=...} bench/dropin_bench.sh\`."
  echo "Medians of $REPEAT rounds; faha-server alone and redis-server --appendfsync always, both"
  echo "durable before each reply, data in $DATA_PARENT. Every run: ${OUT%.md}.tsv."
  echo
  echo "## Transactions: MULTI + 10 SETs + EXEC against 10 pipelined SETs"
  echo "faha-txn-bench, 50 clients, 4 groups in flight each, 100-byte values, ${SECONDS_EACH} s each."
  echo
  echo "| system | SETs/s via MULTI | SETs/s pipelined | MULTI / pipelined | CPU us/SET via MULTI | CPU us/SET pipelined |"
  echo "|---|---|---|---|---|---|"
  for sys in faha redis-always; do
    m="$(med "$sys" txn-multi-sets/s)"; p="$(med "$sys" txn-pipelined-sets/s)"
    echo "| $sys | $m | $p | $(ratio "$m" "$p") | $(med "$sys" txn-multi-cpu-us/set) | $(med "$sys" txn-pipelined-cpu-us/set) |"
  done
  echo
  echo "## redis-benchmark (-c 50 -P 16 -d 100 -r 100000), requests/s"
  echo
  echo "| test | faha | redis-always | faha / redis-always |"
  echo "|---|---|---|---|"
  for t in SET GET INCR "MSET (10 keys)" "EVALSHA (3 keys)"; do
    f="$(med faha "$t")"; r="$(med redis-always "$t")"
    echo "| $t | $f | $r | $(ratio "$f" "$r") |"
  done
  if [ -n "${OLD_BIN_DIR:-}" ]; then
    echo
    echo "## SET and GET against the commit before the issue ($OLD_BIN_DIR), alternated"
    echo
    echo "| test | before | now | now / before |"
    echo "|---|---|---|---|"
    for t in SET GET; do
      o="$(med faha-old "$t")"; n="$(awk -F'\t' -v t="$t" '$1 == "faha" && $2 == t {print $3}' "$results" | tail -n "$REPEAT" | median)"
      echo "| $t | $o | $n | $(ratio "$n" "$o") |"
    done
  fi
} > "$OUT.tmp"
cp "$results" "${OUT%.md}.tsv"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
