#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install packages, build, start a
# faha-server on 127.0.0.1 with its data under .demo/, run a short demo
# workload through faha-cli and redis-benchmark (every write durable before
# its reply), print the results, and stop the server.
# Environment: FAHA_PORT (default 7379), DEMO_N (redis-benchmark requests, default 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target faha-server faha-cli

port=${FAHA_PORT:-7379}
n=${DEMO_N:-200000}
data=.demo/data
rm -rf "$data"  # a fresh log each run, so the figures are comparable
mkdir -p .demo
./build/faha-server --data_dir="$data" --port="$port" --metrics_port=-1 > .demo/server.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  ./build/faha-cli -p "$port" PING > /dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat .demo/server.log; echo "faha-server failed to start"; exit 1; }
  sleep 0.05
done
echo "== faha-server pid $pid on 127.0.0.1:$port, data in $data"
grep -E "granularity|recovery:" .demo/server.log | sed 's/^[^ ]* . /   /'
cli() { echo "faha-cli> $*"; ./build/faha-cli -p "$port" "$@" | sed 's/^/   /'; }
cli SET demo:greeting "hello, durable world"
cli GET demo:greeting
cli INCR demo:counter
cli SET demo:session abc EX 60
cli TTL demo:session
cli MSET demo:a 1 demo:b 2
cli MGET demo:a demo:b demo:missing
echo
echo "== redis-benchmark (50 clients, 1000-byte values, pipeline 16, $n requests): every SET durable before its reply"
redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 50 -d 1000 -P 16 -n "$n" -r 100000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/^/   /'
echo "== redis-benchmark, no pipelining"
redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 50 -d 1000 -P 1 -n $((n / 4)) -r 100000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/^/   /'
echo
echo "== server figures (INFO)"
./build/faha-cli -p "$port" INFO | tr -d '\r' | grep -E '^(db0|log_granularity|log_bytes|log_batches|batch_ops_avg|persist_usec_p50|persist_usec_p99|index_bytes_per_key|latency_write_usec_p50|latency_write_usec_p99|latency_read_usec_p99):' | sed 's/^/   /' || true
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
echo "== stopped; $(tail -1 .demo/server.log | sed 's/^[^ ]* . //')"
