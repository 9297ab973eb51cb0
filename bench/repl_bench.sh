#!/usr/bin/env bash
# repl_bench.sh: what synchronous replication costs. In one run, on loopback:
#   - faha0: a single faha-server (no backups),
#   - faha1, faha2, faha3: a primary with 1, 2, 3 backups (deploy/local-cluster;
#     a write is acknowledged once it is durable in every log),
#   - redis_2rep: Redis with --appendonly yes --appendfsync always and 2 replicas
#     (also appendfsync always; Redis replicates asynchronously, so this is
#     faster-than-durable for the replicas).
# Each system gets `redis-benchmark -t set -c 50 -d 1000 -P 16 -r 100000 --csv`
# and (FaHA only) build/faha_native_load (8 connections x 16 pipelined PUTs of
# 1000 bytes, NATIVE_OPS in all), REPEAT times, interleaved across the systems.
# Every run starts the system afresh on empty data directories and removes
# them afterwards, so memory stays bounded and no run inherits another's log.
# FaHA nodes preallocate PREALLOC_MB of log at start (this VM backs fresh guest
# pages slowly; see docs/bench.md), as a log with cleaning recycles segments.
# The table shows medians of requests/s, p50 and p99 latency, the throughput
# ratio to faha0, and the CPU time the primary process spent per write (all
# nodes share this machine's cores, so throughput here also pays for the
# backups' work; the primary's CPU per write is what bounds it when backups
# run elsewhere).
#
# Run (from the repository root, after building with -DFAHA_BUILD_BENCH=ON):
#   bench/repl_bench.sh
#   FAHA_DATA_PARENT=/dev/shm REPEAT=5 OUT=/tmp/repl.md bench/repl_bench.sh
# Environment:
#   FAHA_BIN_DIR      faha-server, faha-cli, faha_native_load (default <repo>/build)
#   BENCH_N           requests per redis-benchmark run (default 200000)
#   NATIVE_OPS        writes per native-client run (default 200000)
#   PREALLOC_MB       --log_preallocate_mb of every FaHA node (default 512; 0: none)
#   REPEAT            runs per system whose median is shown (default 3)
#   FAHA_DATA_PARENT  parent of every data directory (default /tmp, a disk;
#                     /dev/shm stands in for PMem bandwidth, not durability)
#   FAHA_FLAGS        extra faha-server flags for every FaHA node
#   OUT               also write the report to this file
# Everything listens on 127.0.0.1; the processes started here are stopped when it exits.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
FAHA_BIN_DIR="$(cd "${FAHA_BIN_DIR:-${REPO_ROOT}/build}" && pwd)"
export FAHA_BIN_DIR
readonly BENCH_N="${BENCH_N:-200000}"
readonly NATIVE_OPS="${NATIVE_OPS:-200000}"
readonly PREALLOC_MB="${PREALLOC_MB:-512}"
readonly REPEAT="${REPEAT:-3}"
readonly FAHA_DATA_PARENT="${FAHA_DATA_PARENT:-/tmp}"
readonly SYSTEMS=(faha0 faha1 faha2 faha3 redis_2rep)

die() { echo "repl_bench.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

for tool in redis-server redis-cli redis-benchmark; do
  command -v "${tool}" >/dev/null || die "${tool} not found (deploy/install-deps.sh)"
done
for b in faha-server faha-cli faha_native_load; do
  [[ -x "${FAHA_BIN_DIR}/${b}" ]] || die "${FAHA_BIN_DIR}/${b} missing; build with -DFAHA_BUILD_BENCH=ON"
done
[[ "${BENCH_N}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive integer"
[[ "${REPEAT}" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"

WORK="$(mktemp -d "${FAHA_DATA_PARENT}/faha-repl-bench.XXXXXX")"
declare -A PORT
PIDS=()
stop_system() {
  local n pid
  for n in 1 2 3; do
    [[ -d "${WORK}/faha${n}" ]] || continue
    "${REPO_ROOT}/deploy/local-cluster" stop --dir "${WORK}/faha${n}" >/dev/null 2>&1 || true
  done
  for pid in "${PIDS[@]}"; do kill -TERM "${pid}" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
  PIDS=()
  rm -rf -- "${WORK:?}"/*
}
cleanup() {
  stop_system
  rm -rf -- "${WORK}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Base ports far apart, each block free on loopback (node i uses base+i,
# base+i+100 and base+i+2000).
free_base() {
  local base p busy
  for _ in $(seq 200); do
    base=$((20000 + (RANDOM % 300) * 100))
    busy=0
    for p in $(seq "${base}" $((base + 3))) $(seq $((base + 100)) $((base + 103))) \
      $(seq $((base + 2000)) $((base + 2003))); do
      [[ -z "$(ss -Htan "( sport = :${p} )" 2>/dev/null)" ]] || busy=1
    done
    [[ "${busy}" == 0 ]] && { echo "${base}"; return; }
  done
  die "no free block of ports"
}

wait_ping() {  # port pid name
  for _ in $(seq 600); do
    kill -0 "$2" 2>/dev/null || die "$3 exited during startup"
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]] && return
    sleep 0.05
  done
  die "$3 did not answer PING"
}

# shellcheck disable=SC2206  # FAHA_FLAGS is meant to split on spaces
EXTRA=(--log_preallocate_mb="${PREALLOC_MB}" ${FAHA_FLAGS:-})
start_system() {  # sys
  local base
  base="$(free_base)"
  PORT[$1]="${base}"
  case "$1" in
    faha0)
      "${FAHA_BIN_DIR}/faha-server" --data_dir="${WORK}/faha0" --bind=127.0.0.1 --port="${base}" \
        --metrics_port=-1 "${EXTRA[@]}" >"${WORK}/faha0.log" 2>&1 &
      PIDS+=($!)
      wait_ping "${base}" $! faha0
      ;;
    faha[123])
      "${REPO_ROOT}/deploy/local-cluster" start --backups "${1#faha}" --dir "${WORK}/$1" \
        --port "${base}" -- --metrics_port=-1 "${EXTRA[@]}" >/dev/null
      ;;
    redis_2rep)
      mkdir -p "${WORK}/redis"
      for i in 0 1 2; do
        local -a cmd=(redis-server --bind 127.0.0.1 --port $((base + i)) --dir "${WORK}/redis"
                      --dbfilename "r${i}.rdb" --appendfilename "r${i}.aof" --save ""
                      --appendonly yes --appendfsync always --daemonize no)
        [[ "${i}" == 0 ]] || cmd+=(--replicaof 127.0.0.1 "${base}")
        "${cmd[@]}" >"${WORK}/redis${i}.log" 2>&1 &
        PIDS+=($!)
        wait_ping $((base + i)) $! "redis ${i}"
      done
      for _ in $(seq 600); do
        [[ "$(redis-cli -p "${base}" info replication | tr -d '\r' | sed -n 's/^connected_slaves://p')" == 2 ]] && break
        sleep 0.05
      done
      ;;
  esac
}

declare -A RUNS
record() { RUNS["$1"]+="$2 "; }
median() {
  tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

primary_pid() {  # sys
  case "$1" in
    faha[123]) cat "${WORK}/$1/node0.pid" ;;
    *) echo "${PIDS[0]}" ;;
  esac
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# CPU time the primary process spent per write, in microseconds (what bounds its
# throughput once backups run on other machines).
record_cpu() {  # key pid ticks_before ops
  record "$1" "$(awk -v t=$(( $(cpu_ticks "$2") - $3 )) -v hz="$(getconf CLK_TCK)" -v n="$4" \
    'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
}

run_redis_benchmark() {  # sys
  local out line pid t0
  pid="$(primary_pid "$1")"
  t0="$(cpu_ticks "${pid}")"
  out="$(redis-benchmark -h 127.0.0.1 -p "${PORT[$1]}" -t set -c 50 -d 1000 -P 16 -n "${BENCH_N}" \
    -r 100000 --csv 2>/dev/null)" || die "redis-benchmark against $1 failed"
  line="$(grep '^"SET"' <<<"${out}" | tr -d '"')"
  [[ -n "${line}" ]] || die "no SET result from redis-benchmark against $1: ${out}"
  # test,rps,avg,min,p50,p95,p99,max (ms)
  record "$1|rb|rps" "$(cut -d, -f2 <<<"${line}")"
  record "$1|rb|p50" "$(cut -d, -f5 <<<"${line}")"
  record "$1|rb|p99" "$(cut -d, -f7 <<<"${line}")"
  record_cpu "$1|rb|cpu" "${pid}" "${t0}" "${BENCH_N}"
  log "$1 redis-benchmark: $(cut -d, -f2 <<<"${line}") req/s p50 $(cut -d, -f5 <<<"${line}") ms p99 $(cut -d, -f7 <<<"${line}") ms"
}

run_native() {  # sys
  local out pid t0
  pid="$(primary_pid "$1")"
  t0="$(cpu_ticks "${pid}")"
  out="$("${FAHA_BIN_DIR}/faha_native_load" --address="127.0.0.1:${PORT[$1]}" \
    --ops="${NATIVE_OPS}")" || die "faha_native_load against $1 failed: ${out}"
  record "$1|nat|rps" "$(sed 's/.*ops_per_sec=\([0-9]*\).*/\1/' <<<"${out}")"
  record "$1|nat|p50" "$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"${out}")"
  record "$1|nat|p99" "$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"${out}")"
  record_cpu "$1|nat|cpu" "${pid}" "${t0}" "${NATIVE_OPS}"
  log "$1 native: ${out}"
}

for ((rep = 1; rep <= REPEAT; rep++)); do
  for sys in "${SYSTEMS[@]}"; do
    log "run ${rep}/${REPEAT}: ${sys}"
    start_system "${sys}"
    run_redis_benchmark "${sys}"
    if [[ "${sys}" == faha* ]]; then run_native "${sys}"; fi
    stop_system
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.2fx", a / b; else print "n/a" }'; }
{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(redis-server --version | cut -d' ' -f1-3)"
  echo "Data under ${FAHA_DATA_PARENT} ($(df -T "${FAHA_DATA_PARENT}" | awk 'NR == 2 { print $2 }')); medians of ${REPEAT} interleaved runs; PREALLOC_MB=${PREALLOC_MB} FAHA_FLAGS='${FAHA_FLAGS:-}'"
  echo "Command: BENCH_N=${BENCH_N} NATIVE_OPS=${NATIVE_OPS} PREALLOC_MB=${PREALLOC_MB} REPEAT=${REPEAT} FAHA_DATA_PARENT=${FAHA_DATA_PARENT} bench/repl_bench.sh"
  echo
  echo "| system | redis-benchmark SET -P16 req/s | vs faha0 | p50 ms | p99 ms | primary CPU us/write | native PUT ops/s | vs faha0 | p50 us | p99 us | primary CPU us/write |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  base_rb="$(median "${RUNS[faha0|rb|rps]}")"
  base_nat="$(median "${RUNS[faha0|nat|rps]}")"
  for sys in "${SYSTEMS[@]}"; do
    rb="$(median "${RUNS[${sys}|rb|rps]}")"
    nat="$(median "${RUNS[${sys}|nat|rps]:-}")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${sys}" "${rb}" \
      "$(ratio "${rb}" "${base_rb}")" \
      "$(median "${RUNS[${sys}|rb|p50]}")" "$(median "${RUNS[${sys}|rb|p99]}")" \
      "$(median "${RUNS[${sys}|rb|cpu]}")" \
      "${nat}" "$(ratio "${nat}" "${base_nat}")" \
      "$(median "${RUNS[${sys}|nat|p50]:-}")" "$(median "${RUNS[${sys}|nat|p99]:-}")" \
      "$(median "${RUNS[${sys}|nat|cpu]:-}")"
  done
} | tee "${OUT:-/dev/null}"
