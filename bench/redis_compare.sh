#!/usr/bin/env bash
# redis_compare.sh: the headline comparison of FaHA against Redis, all three
# measured in the same run on the same machine with redis-benchmark:
#   - faha-server (every write durable in its log before the reply),
#   - Redis without persistence (--save '' --appendonly no): the speed ceiling,
#   - Redis with --appendonly yes --appendfsync always: durable Redis.
# For each, `redis-benchmark -t set,get -c 50 -d 1000 -r 100000 --csv` runs
# with -P 1 and -P 16, REPEAT times, interleaved across the systems so drift
# hits all of them alike; the table shows the median requests/s of each
# (system, test, pipeline) and its ratio to Redis without persistence.
#
# Run (from the repository root, faha-server built):
#   bench/redis_compare.sh
#   BENCH_N=50000 REPEAT=1 OUT=/tmp/compare.md bench/redis_compare.sh
# Environment:
#   FAHA_BIN_DIR       where faha-server is (default build, then <repo>/build)
#   BENCH_N            requests per redis-benchmark run (default 200000)
#   REPEAT             runs per (system, pipeline) whose median is shown (default 3)
#   FAHA_DATA_PARENT   parent of faha's data directory (default /tmp, a disk).
#                      /dev/shm (tmpfs) stands in for PMem bandwidth: persisting
#                      there is a cheap msync of memory, but it is not durable
#                      across a power cut, so figures on it are a PMem stand-in,
#                      not a durability claim. The header says which was used.
#   REDIS_DATA_PARENT  parent of the Redis data directories (default: the same
#                      as FAHA_DATA_PARENT, so the AOF fsyncs hit the same medium)
#   FAHA_FLAGS         extra faha-server flags, e.g. "--log_preallocate_mb=4096"
#   OUT                also write the report to this file
#   KEEP_DATA=1        leave the data directories and server logs in place
# All servers listen on 127.0.0.1 only and all traffic stays on loopback. The
# servers this script starts are stopped by pid when it exits.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
FAHA_BIN_DIR="${FAHA_BIN_DIR:-build}"
if [[ ! -x "${FAHA_BIN_DIR}/faha-server" && "${FAHA_BIN_DIR}" != /* ]]; then
  FAHA_BIN_DIR="${REPO_ROOT}/${FAHA_BIN_DIR}"
fi
FAHA_SERVER="$(cd "${FAHA_BIN_DIR}" 2>/dev/null && pwd)/faha-server" || FAHA_SERVER=""
readonly FAHA_SERVER
readonly BENCH_N="${BENCH_N:-200000}"
readonly REPEAT="${REPEAT:-3}"
readonly FAHA_DATA_PARENT="${FAHA_DATA_PARENT:-/tmp}"
readonly REDIS_DATA_PARENT="${REDIS_DATA_PARENT:-${FAHA_DATA_PARENT}}"
readonly HOST=127.0.0.1
readonly CLIENTS=50
readonly VALUE_BYTES=1000
readonly KEYSPACE=100000
readonly PIPELINES=(1 16)
readonly TESTS=(SET GET)
readonly SYSTEMS=(redis_nopersist redis_aof_always faha)
declare -A SYSTEM_NAME=(
  [redis_nopersist]="Redis, no persistence"
  [redis_aof_always]="Redis, appendfsync always"
  [faha]="FaHA"
)

die() { echo "redis_compare.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

for tool in redis-server redis-cli redis-benchmark; do
  command -v "${tool}" >/dev/null || die "${tool} not found (apt-get install redis-server redis-tools)"
done
[[ -x "${FAHA_SERVER}" ]] || die "faha-server not found in ${FAHA_BIN_DIR}; build it: cmake --build build --target faha-server"
[[ "${BENCH_N}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive integer"
[[ "${REPEAT}" =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
for d in "${FAHA_DATA_PARENT}" "${REDIS_DATA_PARENT}"; do
  [[ -d "${d}" && -w "${d}" ]] || die "${d} is not a writable directory"
done

# --- servers -----------------------------------------------------------------
declare -A PORT PID DATA_DIR SERVER_CMD
WORK_DIR="$(mktemp -d /tmp/faha-compare.XXXXXX)"  # server logs

cleanup() {
  local sys pid
  for sys in "${!PID[@]}"; do
    pid="${PID[${sys}]}"
    kill -TERM "${pid}" 2>/dev/null || continue
    for _ in $(seq 100); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  if [[ "${KEEP_DATA:-0}" == 1 ]]; then
    log "kept data and logs: ${WORK_DIR} ${DATA_DIR[*]:-}"
  else
    local dir
    for dir in "${DATA_DIR[@]}"; do rm -rf -- "${dir}"; done
    rm -rf -- "${WORK_DIR}"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (the servers started before are
# listening by the time the next port is picked, so they are skipped).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    if [[ -z "$(ss -Htan "( sport = :${port} or dport = :${port} )" 2>/dev/null)" ]]; then
      echo "${port}"
      return
    fi
  done
  die "no free port found"
}

# Waits until the server of `sys` answers PING; fails if it exits first.
wait_ready() {
  local sys="$1"
  for _ in $(seq 600); do
    if ! kill -0 "${PID[${sys}]}" 2>/dev/null; then
      tail -n 20 "${WORK_DIR}/${sys}.log" >&2 || true
      die "${sys} exited during startup (log above)"
    fi
    if [[ "$(redis-cli -h "${HOST}" -p "${PORT[${sys}]}" ping 2>/dev/null)" == PONG ]]; then
      return
    fi
    sleep 0.1
  done
  die "${sys} did not answer PING within 60 s"
}

start_server() {
  local sys="$1" parent dir port
  port="$(free_port)"
  case "${sys}" in
    faha) parent="${FAHA_DATA_PARENT}" ;;
    *) parent="${REDIS_DATA_PARENT}" ;;
  esac
  dir="$(mktemp -d "${parent}/faha-compare-${sys}.XXXXXX")"
  DATA_DIR[${sys}]="${dir}"
  PORT[${sys}]="${port}"
  local -a cmd
  case "${sys}" in
    faha)
      cmd=("${FAHA_SERVER}" --data_dir="${dir}/data" --port="${port}" --metrics_port=-1
           --bind="${HOST}")
      # shellcheck disable=SC2206  # extra flags are meant to split on spaces
      [[ -z "${FAHA_FLAGS:-}" ]] || cmd+=(${FAHA_FLAGS})
      ;;
    redis_nopersist)
      cmd=(redis-server --bind "${HOST}" --port "${port}" --dir "${dir}" --save ""
           --appendonly no --daemonize no)
      ;;
    redis_aof_always)
      cmd=(redis-server --bind "${HOST}" --port "${port}" --dir "${dir}" --save ""
           --appendonly yes --appendfsync always --daemonize no)
      ;;
  esac
  SERVER_CMD[${sys}]="$(printf '%q ' "${cmd[@]}")"
  "${cmd[@]}" >"${WORK_DIR}/${sys}.log" 2>&1 &
  PID[${sys}]=$!
  wait_ready "${sys}"
  log "${sys} ready on ${HOST}:${port} (pid ${PID[${sys}]}, data ${dir})"
}

# --- benchmark ---------------------------------------------------------------
bench_args() {  # bench_args <port> <pipeline>: sets BENCH_ARGS
  BENCH_ARGS=(redis-benchmark -h "${HOST}" -p "$1" -t "set,get" -c "${CLIENTS}" -d "${VALUE_BYTES}"
              -P "$2" -n "${BENCH_N}" -r "${KEYSPACE}" --csv)
}

declare -A RUNS  # "sys|TEST|pipeline" -> space-separated requests/s of each run

run_bench() {
  local sys="$1" pipeline="$2" out line test rps
  bench_args "${PORT[${sys}]}" "${pipeline}"
  out="$("${BENCH_ARGS[@]}" 2>"${WORK_DIR}/bench.err")" ||
    { cat "${WORK_DIR}/bench.err" >&2; die "redis-benchmark against ${sys} failed"; }
  # --csv: a header line, then "TEST","rps","avg_latency_ms",...
  while IFS= read -r line; do
    line="${line//\"/}"
    test="${line%%,*}"
    rps="$(cut -d, -f2 <<<"${line}")"
    [[ " ${TESTS[*]} " == *" ${test} "* ]] || continue
    RUNS["${sys}|${test}|${pipeline}"]+="${rps} "
    log "${sys} ${test} -P ${pipeline}: ${rps} requests/s"
  done <<<"${out}"
  for test in "${TESTS[@]}"; do
    [[ -n "${RUNS["${sys}|${test}|${pipeline}"]:-}" ]] ||
      die "no ${test} result from redis-benchmark against ${sys}: ${out}"
  done
}

median() {  # median of the numbers in $1
  tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

for sys in "${SYSTEMS[@]}"; do start_server "${sys}"; done
for ((rep = 1; rep <= REPEAT; rep++)); do
  for pipeline in "${PIPELINES[@]}"; do
    for sys in "${SYSTEMS[@]}"; do
      log "run ${rep}/${REPEAT}: ${sys} -P ${pipeline}"
      run_bench "${sys}" "${pipeline}"
    done
  done
done

# --- report ------------------------------------------------------------------
medium() { stat -f -c %T "$1" 2>/dev/null || echo unknown; }

report() {
  echo "# FaHA vs Redis: redis-benchmark, ${CLIENTS} clients, ${VALUE_BYTES}-byte values, loopback"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- host: $(uname -srm), $(nproc) CPUs"
  echo "- redis: $(redis-server --version)"
  echo "- faha: $("${FAHA_SERVER}" --version 2>&1 | head -n 1) (${FAHA_SERVER})"
  echo "- faha data dir: ${DATA_DIR[faha]}/data (filesystem: $(medium "${DATA_DIR[faha]}"))"
  if [[ "$(medium "${DATA_DIR[faha]}")" == tmpfs ]]; then
    echo "  - tmpfs stands in for PMem bandwidth: not durable across a power cut"
  fi
  echo "- redis data dirs: ${DATA_DIR[redis_nopersist]}, ${DATA_DIR[redis_aof_always]}" \
       "(filesystem: $(medium "${DATA_DIR[redis_aof_always]}"))"
  echo "- requests per run: ${BENCH_N}; keyspace ${KEYSPACE}; runs per cell: ${REPEAT} (median shown)"
  echo "- servers:"
  for sys in "${SYSTEMS[@]}"; do echo "  - \`${SERVER_CMD[${sys}]% }\`"; done
  echo "- benchmark (for each server port and -P in ${PIPELINES[*]}):"
  bench_args PORT P
  echo "  \`${BENCH_ARGS[*]}\`"
  echo
  echo "| test | pipeline | system | requests/s (median) | vs Redis, no persistence | all runs |"
  echo "|---|---|---|---:|---:|---|"
  local test pipeline sys med base ratio
  for test in "${TESTS[@]}"; do
    for pipeline in "${PIPELINES[@]}"; do
      base="$(median "${RUNS["redis_nopersist|${test}|${pipeline}"]}")"
      for sys in "${SYSTEMS[@]}"; do
        med="$(median "${RUNS["${sys}|${test}|${pipeline}"]}")"
        ratio="$(awk -v a="${med}" -v b="${base}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
        printf '| %s | -P %s | %s | %.0f | %s | %s |\n' "${test}" "${pipeline}" \
          "${SYSTEM_NAME[${sys}]}" "${med}" "${ratio}" "${RUNS["${sys}|${test}|${pipeline}"]% }"
      done
    done
  done
}

if [[ -n "${OUT:-}" ]]; then
  report | tee "${OUT}"
else
  report
fi
