#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install packages, build, start a
# local cluster (a primary and 2 backups on 127.0.0.1, data under .demo/) with
# deploy/local-cluster, run a few faha-cli commands and a YCSB workload
# (faha-bench, workload A: every write durable on all three logs before its
# reply) and redis-benchmark against it, show that the backups hold the same
# data, stop it; then run a short bench/compare.sh (faha with 0 and 2 backups
# against Redis without persistence, with appendfsync always, and with that +
# 2 replicas, YCSB workloads A B C F D) and print its table.
# Environment: FAHA_PORT (primary's port, default 7379; backups use the next
# two), DEMO_RECORDS (records, default 10000), DEMO_OPS (operations per
# workload run, default 20000), DEMO_THREADS (client threads, default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target faha-server faha-cli faha-bench

port=${FAHA_PORT:-7379}
records=${DEMO_RECORDS:-10000}
ops=${DEMO_OPS:-20000}
threads=${DEMO_THREADS:-8}
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
cli MGET demo:greeting demo:missing
echo
target="native://127.0.0.1:$port"
echo "== faha-bench load + run, YCSB workload A (50% reads, 50% updates, zipfian, 1 KB records), $threads threads, $records records, $ops operations"
ycsb=(-P bench/workloads/workloada -p "target=$target" -p "recordcount=$records"
      -p "operationcount=$ops" -p "threadcount=$threads" -p status.interval=0 -p failonerror=true)
./build/faha-bench load "${ycsb[@]}" > .demo/load.txt
./build/faha-bench run "${ycsb[@]}" > .demo/run.txt
grep -E '^\[(OVERALL|READ|UPDATE)\], (RunTime|Throughput|Operations|50th|99th|Return)' .demo/run.txt | sed 's/^/   /'
echo "== redis-benchmark (any Redis client works): 50 clients, 1000-byte values, every SET durable on 3 logs before its reply"
redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c 50 -d 1000 -P 16 -n 100000 -r 100000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^(SET|GET): [0-9]' | sed 's/^/   /'
echo
echo "== the backups hold the same data (FAHA.DIGEST: committed LSN, log digest, data digest, keys)"
for _ in $(seq 1 50); do  # backups apply a little behind what they made durable
  d=$(for i in 0 1 2; do ./build/faha-cli -p $((port + i)) FAHA.DIGEST | tr '\n' ' '; echo; done)
  [ "$(sort -u <<< "$d" | wc -l)" = 1 ] && break
  sleep 0.1
done
paste -d' ' <(printf '   %-8s\n' primary backup1 backup2) <(echo "$d")
(./build/faha-cli -p $((port + 1)) SET demo:x 1 || true) | sed "s/^/   backup1> SET demo:x 1 -> /"
./deploy/local-cluster stop --dir "$dir" | sed 's/^/== /'
trap - EXIT
echo
echo "== bench/compare.sh, short: each system started fresh, $records records, $ops operations per workload, $threads threads, one round"
RECORDS=$records OPS=$ops THREADS=$threads REPEAT=1 OUT_DIR=.demo/bench FAHA_BIN_DIR=build \
  ./bench/compare.sh
echo "(the full comparison, median of 3 rounds: docs/bench/compare.md)"
