#!/usr/bin/env bash
# bench/memory_compare.sh: DRAM per key of faha's index against
# std::unordered_map<std::string, location> and against redis-server, for the
# same KEYS keys ("key:%012d", 16 bytes) with VALUE_BYTES-byte values, in one
# run; plus faha's recovery time for them.
#   faha: build/faha_memory_bench (a real Store: index bytes per key, the
#         unordered_map of the same keys measured with mallinfo2, recovery);
#   redis: redis-server without persistence, loaded through redis-cli --pipe;
#         (used_memory after - used_memory before) / keys, from INFO memory.
# Writes OUT_DIR/memory.md and prints it.
#
#   bench/memory_compare.sh                 # 10 M keys, 100-byte values
#   KEYS=1000000 bench/memory_compare.sh    # a short one
# Environment: FAHA_BIN_DIR (build), KEYS (10000000), VALUE_BYTES (100),
# OUT_DIR (docs/bench), DATA_PARENT (/dev/shm: faha's log; 10 M keys take 1.6 GB).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bin="${FAHA_BIN_DIR:-$repo/build}"
KEYS="${KEYS:-10000000}"
VALUE_BYTES="${VALUE_BYTES:-100}"
OUT_DIR="${OUT_DIR:-docs/bench}"
DATA_PARENT="${DATA_PARENT:-/dev/shm}"
source bench/lib.sh
bench_need memory_compare "$bin/faha_memory_bench"
command -v redis-server > /dev/null || { echo "memory_compare: redis-server missing (deploy/install-deps.sh)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
bench_workdir "$DATA_PARENT" faha-mem
start_time=$(date +%s)

"$bin/faha_memory_bench" --keys "$KEYS" --value_bytes "$VALUE_BYTES" --dir "$work/faha" > "$work/faha.txt"
f() { sed -n "s/^$1: //p" "$work/faha.txt"; }

# Redis: the same keys and value size, through the protocol in bulk.
port=$(bench_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  > "$work/redis.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do [ "$(redis-cli -p "$port" PING 2> /dev/null)" = PONG ] && break; sleep 0.05; done
used() { redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
before=$(used)
awk -v n="$KEYS" -v vb="$VALUE_BYTES" 'BEGIN {
  v = sprintf("%*s", vb, ""); gsub(/ /, "v", v)
  for (i = 0; i < n; i++) {
    k = sprintf("key:%012d", i)
    printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, vb, v
  }
}' | redis-cli -p "$port" --pipe > "$work/pipe.txt"
after=$(used)
rkeys=$(redis-cli -p "$port" DBSIZE)
kill "$pid"; wait "$pid" 2> /dev/null || true; pid=""
[ "$rkeys" = "$KEYS" ] || { echo "memory_compare: redis holds $rkeys keys, not $KEYS" >&2; exit 1; }
redis_per_key=$(awk -v a="$after" -v b="$before" -v n="$KEYS" 'BEGIN {printf "%.1f", (a - b) / n}')
elapsed=$(( $(date +%s) - start_time ))

md="$OUT_DIR/memory.md"
{
  echo "# DRAM per key: faha's index, std::unordered_map, Redis"
  echo
  echo "Machine: $(bench_machine). Commit $(git rev-parse --short HEAD 2> /dev/null || echo '?'), Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')."
  echo "Command: \`KEYS=$KEYS VALUE_BYTES=$VALUE_BYTES bench/memory_compare.sh\` ($elapsed s); faha's log under $DATA_PARENT."
  echo "$KEYS keys \`key:%012d\` (16 bytes) with $VALUE_BYTES-byte values, one run."
  echo
  echo "| what holds the keys | DRAM bytes per key | vs faha's index |"
  echo "|---|---:|---:|"
  idx=$(f index_bytes_per_key)
  um=$(f unordered_map_bytes_per_key)
  printf '| faha base index (fingerprint + log location; keys and values stay in the log) | %s | 1.00 |\n' "$idx"
  printf '| faha, all anonymous memory grown during the insert (index + allocator slack + buffers) | %s | %s |\n' \
    "$(f rss_anon_growth_bytes_per_key)" "$(awk -v a="$(f rss_anon_growth_bytes_per_key)" -v b="$idx" 'BEGIN {printf "%.2f", a/b}')"
  printf '| std::unordered_map<std::string, uint64_t> of the same keys (mallinfo2) | %s | %s |\n' \
    "$um" "$(awk -v a="$um" -v b="$idx" 'BEGIN {printf "%.2f", a/b}')"
  printf '| redis-server used_memory (keys and values in DRAM) | %s | %s |\n' \
    "$redis_per_key" "$(awk -v a="$redis_per_key" -v b="$idx" 'BEGIN {printf "%.2f", a/b}')"
  echo
  echo "faha's hot layer is extra and bounded (\`--hot_cache_bytes\`, 64 MiB by default) whatever the key count."
  echo "Recovery of the $KEYS keys: $(f recovery_seconds) s ($(f recovery_keys_per_s) keys/s, $(f log_bytes) bytes of log); verify: $(f verify)."
  echo
  echo '```'
  cat "$work/faha.txt"
  echo '```'
} > "$md"
cat "$md"
