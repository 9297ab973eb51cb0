#!/usr/bin/env bash
# write_path.sh: the cost of a durable write, in one table from one run.
#
# Rows, all on the same data directory's file system and the same machine:
#   device          the file system's own limit: faha_device_limit writes 1000 B
#                   at increasing offsets into a preallocated, zero-written file
#                   with fdatasync after each (one waiting writer; the zeros
#                   written 4 KiB at a time, whose small folios sync fastest on
#                   ext4: faha_device_limit --zero_chunk); also its
#                   pwritev2(RWF_DSYNC) and O_DIRECT|O_DSYNC variants; and
#                   the fdatasync loop again with DEVICE_GAP_US between writes
#                   ("device ..., 60 us apart"), as a server waits a request's
#                   round trip between one client's syncs: on a VM a sync
#                   after a pause can take longer than one issued back to back
#   device, logs    with p16: MB/s a log for 1 log, then 3 logs synced at once
#                   (a process each, LOG_BYTES a sync): the disk's own bound
#                   for faha-2 / faha-0 with every node on this disk
#   faha-0/1/2      faha-server alone, and a primary with 1 or 2 backups
#                   (deploy/local-cluster; every node on this machine and disk)
#   redis-always    redis-server --appendonly yes --appendfsync always
#   redis-none      redis-server without persistence (the speed ceiling)
# each at three loads of redis-benchmark SET with 1000-byte values:
#   c1    -c 1  -P 1    one client waiting for each reply
#   c8    -c 8  -P 1    eight such clients
#   p16   -c 50 -P 16   fifty clients, sixteen requests in flight each
# Columns: SET/s, p50 and p99 latency (ms, redis-benchmark's), and the server
# CPU time per SET (utime + stime from /proc/PID/stat, microseconds) of every
# process: the primary, and each backup. Every figure is the median of REPEAT
# runs; systems and loads are interleaved so that drift hits them alike, and
# every run starts its servers afresh.
#
# Run (from the repository root, release build in build-release or build):
#   bench/write_path.sh                     # data on /var/tmp (ext4 here)
#   bench/write_path.sh --tmpfs             # data on /dev/shm: no disk, CPU only
#   bench/write_path.sh --dir /mnt/nvme     # any directory
# Environment: REPEAT (3), SETTLE_S (1: seconds between a start and the first load,
# followed by a sync), N_C1 (3000), N_C8 (20000), N_P16 (200000) requests
# per run, WARM (0: SETs sent at the p16 load after each start and before the
# measured loads, so that they meet a log in its steady state, where cleaning
# frees a segment for each one written and its file is reused, rather than a
# log still growing into new files; 600000 is six times the key range's data),
# FAHA_BIN_DIR, FAHA_FLAGS (extra faha-server flags for every node),
# OUT (also write the report there), SYSTEMS and LOADS (a subset of the rows, e.g.
# SYSTEMS="faha-0 redis-none" LOADS=c1; ratios that need a missing row print "-"),
# LOG_BYTES (262144) and LOG_COUNT (256): the "device, logs" rows' sync size and syncs,
# DEVICE_GAP_US (60: about a loopback request's round trip; 0 leaves the row out).
# Servers listen on 127.0.0.1 only and are stopped by pid when the script exits.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${REPO_ROOT}/bench/lib.sh"
DATA_PARENT=/var/tmp
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tmpfs) DATA_PARENT=/dev/shm; shift ;;
    --dir) DATA_PARENT="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^# Servers listen/p' "$0"; exit 0 ;;
    *) echo "write_path.sh: unknown argument $1 (--tmpfs, --dir DIR)" >&2; exit 2 ;;
  esac
done
REPEAT="${REPEAT:-3}"
SETTLE_S="${SETTLE_S:-1}"
WARM="${WARM:-0}"
[[ "${WARM}" =~ ^[0-9]+$ ]] || { echo "write_path.sh: WARM must be a count of SETs" >&2; exit 2; }
LOG_BYTES="${LOG_BYTES:-262144}"
LOG_COUNT="${LOG_COUNT:-256}"
DEVICE_GAP_US="${DEVICE_GAP_US:-60}"
[[ "${DEVICE_GAP_US}" =~ ^(0|[1-9][0-9]{0,6})$ && "${DEVICE_GAP_US}" -le 1000000 ]] || { echo "write_path.sh: DEVICE_GAP_US must be 0..1000000 microseconds" >&2; exit 2; }
[[ "${LOG_BYTES}" =~ ^[1-9][0-9]*$ && "${LOG_BYTES}" -le 1048576 && "${LOG_COUNT}" =~ ^[1-9][0-9]*$ ]] ||
  { echo "write_path.sh: LOG_BYTES must be 1..1048576 and LOG_COUNT a positive count" >&2; exit 2; }
declare -A N=([c1]="${N_C1:-3000}" [c8]="${N_C8:-20000}" [p16]="${N_P16:-200000}")
declare -A LOAD_ARGS=([c1]="-c 1 -P 1" [c8]="-c 8 -P 1" [p16]="-c 50 -P 16")
# shellcheck disable=SC2206  # space-separated lists
LOADS=(${LOADS:-c1 c8 p16})
# shellcheck disable=SC2206
SYSTEMS=(${SYSTEMS:-faha-0 faha-1 faha-2 redis-always redis-none})
for l in "${LOADS[@]}"; do
  [[ -n "${LOAD_ARGS[${l}]:-}" ]] || { echo "write_path.sh: unknown load ${l} (c1, c8, p16)" >&2; exit 2; }
done
for s in "${SYSTEMS[@]}"; do
  case "${s}" in
    faha-0 | faha-1 | faha-2 | redis-always | redis-none) ;;
    *) echo "write_path.sh: unknown system ${s} (faha-0 faha-1 faha-2 redis-always redis-none)" >&2; exit 2 ;;
  esac
done
if [[ -z "${FAHA_BIN_DIR:-}" ]]; then
  FAHA_BIN_DIR="${REPO_ROOT}/build-release"
  [[ -x "${FAHA_BIN_DIR}/faha-server" ]] || FAHA_BIN_DIR="${REPO_ROOT}/build"
fi
export FAHA_BIN_DIR
bench_need write_path.sh "${FAHA_BIN_DIR}/faha-server" "${FAHA_BIN_DIR}/faha_device_limit"
for tool in redis-server redis-cli redis-benchmark; do
  command -v "${tool}" > /dev/null || { echo "write_path.sh: ${tool} missing (deploy/install-deps.sh)" >&2; exit 1; }
done
[[ "${REPEAT}" =~ ^[1-9][0-9]*$ ]] || { echo "write_path.sh: REPEAT must be a positive integer" >&2; exit 2; }
[[ -d "${DATA_PARENT}" && -w "${DATA_PARENT}" ]] || { echo "write_path.sh: ${DATA_PARENT} is not a writable directory" >&2; exit 1; }
FS_TYPE="$(findmnt -no FSTYPE -T "${DATA_PARENT}" 2> /dev/null | head -1)"
[[ -n "${FS_TYPE}" ]] || FS_TYPE="$(stat -f -c %T "${DATA_PARENT}")"
HZ="$(getconf CLK_TCK)"
log() { echo "[$(date +%T)] $*" >&2; }

WORK="$(mktemp -d "${DATA_PARENT}/faha-write-path.XXXXXX")"
PIDS=()        # every process this script started
NODE_PIDS=()   # the system under test: primary first, then backups
PORT=""
CLUSTER_DIR=""
stop_system() {
  local pid
  if [[ -n "${CLUSTER_DIR}" ]]; then
    "${REPO_ROOT}/deploy/local-cluster" stop --dir "${CLUSTER_DIR}" > /dev/null 2>&1 || true
    CLUSTER_DIR=""
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "${pid}" 2> /dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "${pid}" 2> /dev/null || true; done
  PIDS=()
  NODE_PIDS=()
  rm -rf -- "${WORK:?}"/sys
}
cleanup() {
  stop_system
  rm -rf -- "${WORK}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_ping() {  # port pid
  for _ in $(seq 600); do
    kill -0 "$2" 2> /dev/null || { echo "write_path.sh: server on port $1 exited during startup" >&2; exit 1; }
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2> /dev/null)" == PONG ]] && return
    sleep 0.05
  done
  echo "write_path.sh: server on port $1 did not answer PING" >&2
  exit 1
}

# shellcheck disable=SC2206  # FAHA_FLAGS is meant to split on spaces
FAHA_EXTRA=(--metrics_port=-1 ${FAHA_FLAGS:-})
declare -A SYSTEM_CMD
start_system() {  # sys
  local sys="$1" base
  mkdir -p "${WORK}/sys"
  case "${sys}" in
    faha-0)
      PORT="$(bench_port)"
      local -a cmd=("${FAHA_BIN_DIR}/faha-server" --data_dir="${WORK}/sys/data" --bind=127.0.0.1
                    --port="${PORT}" "${FAHA_EXTRA[@]}")
      SYSTEM_CMD[${sys}]="${cmd[*]}"
      "${cmd[@]}" > "${WORK}/sys/server.log" 2>&1 &
      PIDS+=($!)
      NODE_PIDS=($!)
      wait_ping "${PORT}" $!
      wait_spares "${PORT}"
      ;;
    faha-1 | faha-2)
      # local-cluster uses base+i, base+i+100 and base+i+2000 for node i.
      base="$(bench_port 1 2 100 101 102 2000 2001 2002)"
      PORT="${base}"
      CLUSTER_DIR="${WORK}/sys/cluster"
      SYSTEM_CMD[${sys}]="deploy/local-cluster start --backups ${sys#faha-} --port P -- ${FAHA_EXTRA[*]}"
      "${REPO_ROOT}/deploy/local-cluster" start --backups "${sys#faha-}" --dir "${CLUSTER_DIR}" \
        --port "${base}" -- "${FAHA_EXTRA[@]}" > /dev/null
      NODE_PIDS=()
      local i
      for i in $(seq 0 "${sys#faha-}"); do NODE_PIDS+=("$(cat "${CLUSTER_DIR}/node${i}.pid")"); done
      # shellcheck disable=SC2046  # one port per node
      wait_spares $(seq "${base}" $((base + ${sys#faha-})))
      ;;
    redis-always | redis-none)
      PORT="$(bench_port)"
      local -a cmd=(redis-server --bind 127.0.0.1 --port "${PORT}" --dir "${WORK}/sys" --save ""
                    --daemonize no)
      if [[ "${sys}" == redis-always ]]; then
        cmd+=(--appendonly yes --appendfsync always)
      else
        cmd+=(--appendonly no)
      fi
      SYSTEM_CMD[${sys}]="${cmd[*]}"
      "${cmd[@]}" > "${WORK}/sys/server.log" 2>&1 &
      PIDS+=($!)
      NODE_PIDS=($!)
      wait_ping "${PORT}" $!
      ;;
  esac
}

declare -A RUNS
record() { RUNS["$1"]+="$2 "; }
med() { tr ' ' '\n' <<< "${RUNS[$1]:-}" | awk 'NF' | median; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# redis-benchmark SET of 1000-byte values over 100,000 keys: N requests with
# the given load flags; prints its CSV.
set_load() {  # n flags...
  redis-benchmark -h 127.0.0.1 -p "${PORT}" -t set -d 1000 -r 100000 -n "$1" "${@:2}" --csv 2> /dev/null
}

run_load() {  # sys load
  local sys="$1" load="$2" out line i
  local -a before=()
  for i in "${!NODE_PIDS[@]}"; do before+=("$(cpu_ticks "${NODE_PIDS[$i]}")"); done
  # shellcheck disable=SC2086  # LOAD_ARGS holds several flags
  out="$(set_load "${N[$load]}" ${LOAD_ARGS[$load]})" || { echo "write_path.sh: redis-benchmark against ${sys} failed" >&2; exit 1; }
  line="$(grep '^"SET"' <<< "${out}" | tr -d '"')"
  [[ -n "${line}" ]] || { echo "write_path.sh: no SET result from ${sys}: ${out}" >&2; exit 1; }
  # SET,rps,avg,min,p50,p95,p99,max (ms)
  record "${sys}|${load}|rps" "$(cut -d, -f2 <<< "${line}")"
  record "${sys}|${load}|p50" "$(cut -d, -f5 <<< "${line}")"
  record "${sys}|${load}|p99" "$(cut -d, -f7 <<< "${line}")"
  local cpus=""
  for i in "${!NODE_PIDS[@]}"; do
    local us
    us="$(awk -v t=$(($(cpu_ticks "${NODE_PIDS[$i]}") - before[i])) -v hz="${HZ}" -v n="${N[$load]}" \
      'BEGIN { printf "%.1f", t * 1e6 / hz / n }')"
    record "${sys}|${load}|cpu${i}" "${us}"
    cpus+=" ${us}"
  done
  log "${sys} ${load}: $(cut -d, -f2 <<< "${line}") SET/s, p50 $(cut -d, -f5 <<< "${line}") ms, CPU us/SET${cpus}"
}

run_device() {
  local out
  out="$("${FAHA_BIN_DIR}/faha_device_limit" --dir "${WORK}" --bytes 1000 --count "${N[c1]}" --mode all --zero_chunk 4096)"
  if (( DEVICE_GAP_US > 0 )); then
    out+=$'\n'"$("${FAHA_BIN_DIR}/faha_device_limit" --dir "${WORK}" --bytes 1000 --count "${N[c1]}" \
      --mode pwrite_fdatasync --zero_chunk 4096 --gap_us "${DEVICE_GAP_US}" | sed 's/mode=[a-z_]*/&_gap/')"
  fi
  while read -r line; do
    local mode
    mode="$(sed 's/.*mode=\([a-z_]*\).*/\1/' <<< "${line}")"
    record "device-${mode}|c1|rps" "$(sed 's/.*ops_per_s=\([0-9.]*\).*/\1/' <<< "${line}")"
    record "device-${mode}|c1|p50" "$(sed 's/.*p50_us=\([0-9.]*\).*/\1/' <<< "${line}" | awk '{ printf "%.3f", $1 / 1000 }')"
    record "device-${mode}|c1|p99" "$(sed 's/.*p99_us=\([0-9.]*\).*/\1/' <<< "${line}" | awk '{ printf "%.3f", $1 / 1000 }')"
    log "device ${line}"
  done <<< "${out}"
}

# Several logs on one disk, as a primary and two backups on one machine keep:
# one faha_device_limit process per log, at once, each writing LOG_BYTES per
# sync (a p16 batch is 270-450 KB here) into a reserved file (unwritten extents, as faha
# leaves a segment while its syncs are large). Recorded as MB/s per log; the
# ratio of three logs to one bounds faha-2 / faha-0 at p16 on this disk.
run_device_logs() {
  local logs i total
  for logs in 1 3; do
    local -a pids=()
    for ((i = 0; i < logs; i++)); do
      "${FAHA_BIN_DIR}/faha_device_limit" --dir "${WORK}" --bytes "${LOG_BYTES}" --count "${LOG_COUNT}" \
        --mode pwrite_fdatasync --zero_chunk 0 > "${WORK}/device-logs.${i}" &
      pids+=($!)
    done
    for i in "${pids[@]}"; do wait "${i}"; done
    total="$(cat "${WORK}"/device-logs.[0-9]* | sed 's/.*ops_per_s=\([0-9.]*\).*/\1/' |
      awk -v b="${LOG_BYTES}" '{ s += $1 * b / 1e6 } END { printf "%.1f", s }')"
    record "device-logs|${logs}|mbps" "$(awk -v t="${total}" -v n="${logs}" 'BEGIN { printf "%.1f", t / n }')"
    record "device-logs|${logs}|p50" "$(sed 's/.*p50_us=\([0-9.]*\).*/\1/' "${WORK}/device-logs.0" | awk '{ printf "%.3f", $1 / 1000 }')"
    log "device, ${logs} log(s) of ${LOG_BYTES} B a sync at once: ${total} MB/s in all"
    rm -f "${WORK}"/device-logs.[0-9]*
  done
}

# A faha node is ready once its spare segments are (INFO log_spare_segments):
# on a disk their zeros hold it for 100-200 ms at start (docs/architecture.md,
# "Paced zeros"), and a load started before would measure that, not the server.
wait_spares() {  # port...
  local port i
  for port in "$@"; do
    for i in $(seq 600); do
      [[ "$(redis-cli -h 127.0.0.1 -p "${port}" info 2> /dev/null | tr -d '\r' |
        sed -n 's/^log_spare_segments://p')" -ge 2 ]] 2> /dev/null && break
      ((i < 600)) || log "faha on port ${port}: spares not ready after 30 s; measuring anyway"
      sleep 0.05
    done
  done
}

# Every system gets SETTLE_S seconds after it answers, then a sync of every
# file system, before its first load: a server's start-up writes (faha prepares
# two spare segments, 128 MiB of zeros on ext4) and the previous run's dirty
# pages would otherwise share the disk with the first load's syncs.
settle() {
  sleep "${SETTLE_S}"
  sync
}

# WARM SETs at the p16 load, not measured, then a settle.
warm() {  # sys
  ((WARM > 0)) || return 0
  # shellcheck disable=SC2086  # LOAD_ARGS holds several flags
  set_load "${WARM}" ${LOAD_ARGS[p16]} > /dev/null || { echo "write_path.sh: warming ${1} failed" >&2; exit 1; }
  settle
}

log "data on ${DATA_PARENT} (${FS_TYPE}), ${REPEAT} runs, binaries from ${FAHA_BIN_DIR}"
for ((rep = 1; rep <= REPEAT; rep++)); do
  run_device
  [[ " ${LOADS[*]} " != *" p16 "* ]] || run_device_logs
  for sys in "${SYSTEMS[@]}"; do
    start_system "${sys}"
    settle
    warm "${sys}"
    for load in "${LOADS[@]}"; do run_load "${sys}" "${load}"; done
    stop_system
  done
done

# --- report ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
{
  echo "# Durable SET: faha against the device and Redis"
  echo
  echo "Machine: $(bench_machine); data directory on ${DATA_PARENT} (${FS_TYPE})."
  echo "Command: \`bench/write_path.sh${DATA_PARENT:+ --dir ${DATA_PARENT}}\` (REPEAT=${REPEAT}), $(date -u +%F)."
  echo "Every figure is the median of ${REPEAT} runs. CPU: server CPU time (user + system) per SET,"
  echo "in microseconds, for the primary and each backup."
  echo
  echo "| system | load | SET/s | p50 ms | p99 ms | CPU us/SET primary | backup 1 | backup 2 |"
  echo "|---|---|---|---|---|---|---|---|"
  for mode in pwrite_fdatasync rwf_dsync odirect_dsync; do
    echo "| device ${mode} | c1 | $(med "device-${mode}|c1|rps") | $(med "device-${mode}|c1|p50") | $(med "device-${mode}|c1|p99") | | | |"
  done
  if (( DEVICE_GAP_US > 0 )); then
    echo "| device pwrite_fdatasync, ${DEVICE_GAP_US} us apart | c1 | $(med "device-pwrite_fdatasync_gap|c1|rps") | $(med "device-pwrite_fdatasync_gap|c1|p50") | $(med "device-pwrite_fdatasync_gap|c1|p99") | | | |"
  fi
  if [[ -n "${RUNS[device-logs|1|mbps]:-}" ]]; then
    echo "| device, 1 log | p16 | $(med "device-logs|1|mbps") MB/s a log | $(med "device-logs|1|p50") | | | | |"
    echo "| device, 3 logs at once | p16 | $(med "device-logs|3|mbps") MB/s a log | $(med "device-logs|3|p50") | | | | |"
  fi
  for sys in "${SYSTEMS[@]}"; do
    for load in "${LOADS[@]}"; do
      k="${sys}|${load}"
      echo "| ${sys} | ${load} | $(med "${k}|rps") | $(med "${k}|p50") | $(med "${k}|p99") | $(med "${k}|cpu0") | $(med "${k}|cpu1") | $(med "${k}|cpu2") |"
    done
  done
  echo
  echo "Loads: c1 = \`-c 1 -P 1 -n ${N[c1]}\`, c8 = \`-c 8 -P 1 -n ${N[c8]}\`, p16 = \`-c 50 -P 16 -n ${N[p16]}\`;"
  echo "each \`redis-benchmark -h 127.0.0.1 -p PORT -t set -d 1000 -r 100000 --csv\` plus those flags."
  ((WARM == 0)) || echo "Before them each system took ${WARM} unmeasured SETs at the p16 load (WARM=${WARM})."
  echo "Device: \`faha_device_limit --dir DATA --bytes 1000 --count ${N[c1]} --mode all --zero_chunk 4096\`$( (( DEVICE_GAP_US > 0 )) && echo ", and \`--mode pwrite_fdatasync --gap_us ${DEVICE_GAP_US}\` (SET/s counts the pauses)")."
  [[ -z "${RUNS[device-logs|1|mbps]:-}" ]] ||
    echo "Device, logs: 1, then 3 processes at once, each \`faha_device_limit --dir DATA --bytes ${LOG_BYTES} --count ${LOG_COUNT} --mode pwrite_fdatasync --zero_chunk 0\` (LOG_BYTES, LOG_COUNT)."
  echo "Servers:"
  for sys in "${SYSTEMS[@]}"; do echo "- ${sys}: \`${SYSTEM_CMD[${sys}]}\`"; done
  echo
  echo "Ratios from the medians above:"
  dev50="$(med "device-pwrite_fdatasync|c1|p50")"
  none50="$(med "redis-none|c1|p50")"
  f50="$(med "faha-0|c1|p50")"
  echo "- c1, faha-0 SET p50 ${f50} ms against device p50 + redis-none p50 = ${dev50} + ${none50} = $(awk -v a="${dev50}" -v b="${none50}" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f", a + b }') ms (faha / device: $(ratio "${f50}" "${dev50}"))"
  if (( DEVICE_GAP_US > 0 )); then
    gap50="$(med "device-pwrite_fdatasync_gap|c1|p50")"
    echo "- the same with the device's writes ${DEVICE_GAP_US} us apart: ${gap50} + ${none50} = $(awk -v a="${gap50}" -v b="${none50}" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f", a + b }') ms"
  fi
  echo "- CPU per SET, faha-0 / redis-always at c8: $(ratio "$(med "faha-0|c8|cpu0")" "$(med "redis-always|c8|cpu0")")"
  echo "- CPU per SET, faha-0 / redis-none at p16: $(ratio "$(med "faha-0|p16|cpu0")" "$(med "redis-none|p16|cpu0")")"
  echo "- CPU per SET at p16 with 2 backups, backup / primary: $(ratio "$(med "faha-2|p16|cpu1")" "$(med "faha-2|p16|cpu0")") and $(ratio "$(med "faha-2|p16|cpu2")" "$(med "faha-2|p16|cpu0")")"
  echo "- SET/s at p16, faha-2 / faha-0 (all nodes on this machine): $(ratio "$(med "faha-2|p16|rps")" "$(med "faha-0|p16|rps")"); faha-1 / faha-0: $(ratio "$(med "faha-1|p16|rps")" "$(med "faha-0|p16|rps")")"
  echo "- The device's own bound for that ratio, MB/s a log with 3 logs at once / with 1: $(ratio "$(med "device-logs|3|mbps")" "$(med "device-logs|1|mbps")")"
  # Each node on a machine of its own: a node's CPU bounds its rate at
  # cores / (CPU per SET); the slowest node bounds the group. The device is the
  # same on every node and every node syncs the same batches, so it does not
  # change the ratio.
  p0="$(med "faha-0|p16|cpu0")"
  worst="$(printf '%s\n' "$(med "faha-2|p16|cpu0")" "$(med "faha-2|p16|cpu1")" "$(med "faha-2|p16|cpu2")" | sort -g | tail -1)"
  echo "- SET/s at p16, faha-2 / faha-0 with each node on its own machine (worked out: CPU per SET of faha-0 / that of the busiest node of faha-2): $(ratio "${p0}" "${worst}")"
  echo "- SET/s, faha-0 / redis-always: c1 $(ratio "$(med "faha-0|c1|rps")" "$(med "redis-always|c1|rps")"), c8 $(ratio "$(med "faha-0|c8|rps")" "$(med "redis-always|c8|rps")"), p16 $(ratio "$(med "faha-0|p16|rps")" "$(med "redis-always|p16|rps")")"
} | tee "${OUT:-/dev/null}"
