#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install packages, build, start a
# local cluster (a primary and 2 backups on 127.0.0.1, data under .demo/) with
# deploy/local-cluster, run a short demo workload through faha-cli and
# redis-benchmark (every write durable on all three logs before its reply),
# show that the backups hold the same data, print the results, and stop.
# Environment: FAHA_PORT (primary's port, default 7379; backups use the next
# two), DEMO_N (redis-benchmark requests, default 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target faha-server faha-cli

port=${FAHA_PORT:-7379}
n=${DEMO_N:-200000}
dir=.demo/cluster
./deploy/local-cluster stop --dir "$dir" > /dev/null 2>&1 || true
rm -rf "$dir"  # a fresh cluster each run, so the figures are comparable
trap './deploy/local-cluster stop --dir "$dir" > /dev/null 2>&1 || true' EXIT
echo "== deploy/local-cluster start --backups 2 --dir $dir --port $port"
./deploy/local-cluster start --backups 2 --dir "$dir" --port "$port" | sed 's/^/   /'
grep -E "granularity" "$dir/node0.log" | sed 's/^[^ ]* . /   /'
cli() { echo "faha-cli> $*"; ./build/faha-cli -p "$port" "$@" | sed 's/^/   /'; }
cli SET demo:greeting "hello, durable world"
cli GET demo:greeting
cli INCR demo:counter
cli SET demo:session abc EX 60
cli TTL demo:session
cli MSET demo:a 1 demo:b 2
cli MGET demo:a demo:b demo:missing
echo
echo "== redis-benchmark (50 clients, 1000-byte values, pipeline 16, $n requests): every SET durable on 3 logs before its reply"
redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 50 -d 1000 -P 16 -n "$n" -r 100000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/^/   /'
echo "== redis-benchmark, no pipelining"
redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 50 -d 1000 -P 1 -n $((n / 4)) -r 100000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/^/   /'
echo
echo "== the backups hold the same data (FAHA.DIGEST: committed LSN, log digest, data digest, keys)"
sleep 0.2
for i in 0 1 2; do
  role=$([ "$i" = 0 ] && echo "primary" || echo "backup$i")
  printf '   %-8s %s\n' "$role" "$(./build/faha-cli -p $((port + i)) FAHA.DIGEST | tr '\n' ' ')"
done
(./build/faha-cli -p $((port + 1)) SET demo:x 1 || true) | sed "s/^/   backup1> SET demo:x 1 -> /"
echo
echo "== server figures (primary INFO)"
./build/faha-cli -p "$port" INFO | tr -d '\r' | grep -E '^(db0|log_granularity|log_bytes|log_batches|batch_ops_avg|persist_usec_p50|persist_usec_p99|index_bytes_per_key|latency_write_usec_p50|latency_write_usec_p99|latency_read_usec_p99|in_sync_backups|backup[0-9]):' | sed 's/^/   /' || true
echo
./deploy/local-cluster status --dir "$dir" | sed 's/^/   /'
./deploy/local-cluster stop --dir "$dir" | sed 's/^/== /'
trap - EXIT
