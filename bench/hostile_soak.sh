#!/usr/bin/env bash
# hostile_soak.sh: a 3-node group under load, then under every hostile client
# of issue 18 at once (bench/hostile_attack.py), with nothing acknowledged lost.
#
# Phases, each SECONDS long (30), on a primary with two backups
# (deploy/local-cluster, a password from a 0600 file, default flags otherwise):
#   before   YCSB workload A (faha-bench over RESP, 8 threads) and
#            faha_acked_writer recording every acknowledged write
#   attack   the same, while hostile_attack.py runs: silent connections to both
#            replication ports (from 127.0.0.1, like the primary), non-reading
#            clients asking for 200 MiB of replies each, unauthenticated bulk
#            senders, trickled commands, idle connections
# Then the primary is restarted while the attack goes on (time to its first
# acknowledged write after it answers PING), and every acknowledged write is
# read back. Prints: YCSB A UPDATE/READ p50/p99 before and during the attack, acknowledged
# writes and how many were lost (must be 0), peak RSS of each node, and what
# the server closed.
#
# Run: bench/hostile_soak.sh [--dir DIR]   (release build in build-release or build)
# Environment: SECONDS_EACH (30), FAHA_BIN_DIR. Loopback only; every process is
# stopped by pid at exit.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${REPO_ROOT}/bench/lib.sh"
DATA_PARENT=/var/tmp
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DATA_PARENT="$2"; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "hostile_soak.sh: unknown argument $1 (--dir DIR)" >&2; exit 2 ;;
  esac
done
SECONDS_EACH="${SECONDS_EACH:-30}"
if [[ -z "${FAHA_BIN_DIR:-}" ]]; then
  FAHA_BIN_DIR="${REPO_ROOT}/build-release"
  [[ -x "${FAHA_BIN_DIR}/faha-server" ]] || FAHA_BIN_DIR="${REPO_ROOT}/build"
fi
export FAHA_BIN_DIR
bench_need hostile_soak.sh "${FAHA_BIN_DIR}/faha-server" "${FAHA_BIN_DIR}/faha_acked_writer" "${FAHA_BIN_DIR}/faha-bench"
for tool in redis-cli python3; do
  command -v "${tool}" > /dev/null || { echo "hostile_soak.sh: ${tool} missing (deploy/install-deps.sh)" >&2; exit 1; }
done

WORK="$(mktemp -d "${DATA_PARENT}/faha-soak.XXXXXX")"
CLUSTER="${WORK}/cluster"
BG=()
cleanup() {
  local p
  for p in "${BG[@]}"; do kill "${p}" 2> /dev/null || true; done
  "${REPO_ROOT}/deploy/local-cluster" stop --dir "${CLUSTER}" > /dev/null 2>&1 || true
  rm -rf -- "${WORK:?}"
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }

PORT="$(bench_port 1 2 100 101 102)"
( umask 077; head -c 24 /dev/urandom | base64 > "${WORK}/password" )
export FAHA_PASSWORD="$(cat "${WORK}/password")"
export REDISCLI_AUTH="${FAHA_PASSWORD}"
log "cluster on 127.0.0.1:${PORT} (backups ${PORT}+1, +2; replication ports +101, +102)"
"${REPO_ROOT}/deploy/local-cluster" start --backups 2 --dir "${CLUSTER}" --port "${PORT}" \
  -- --requirepass_file="${WORK}/password" --metrics_port=-1 > /dev/null

declare -A PEAK=()
sample_rss() {  # peak VmRSS (KiB) of each node, every 0.5 s, into $WORK/rss
  while true; do
    for i in 0 1 2; do
      local p rss
      p="$(cat "${CLUSTER}/node${i}.pid" 2> /dev/null || true)"
      rss="$(awk '/VmRSS/ {print $2}' "/proc/${p}/status" 2> /dev/null || echo 0)"
      echo "node${i} ${rss:-0}"
    done >> "${WORK}/rss"
    sleep 0.5
  done
}

# YCSB workload A (50 % reads, 50 % updates, zipfian) for SECONDS_EACH, 8
# threads, through faha-bench over RESP: "UPDATE p50 p99 READ p50 p99 ops/s"
# (ms). The operation count is worked out from a 3 s calibration run.
ycsb() {
  timeout $(( SECONDS_EACH * 4 + 60 )) "${FAHA_BIN_DIR}/faha-bench" "$1" \
    -P "${REPO_ROOT}/bench/workloads/workloada" -p "target=resp://127.0.0.1:${PORT}" \
    -p "password=${FAHA_PASSWORD}" -p recordcount=20000 -p "operationcount=$2" -threads 8 2> /dev/null
}
OPS_PER_S=""
load() {
  if [[ -z "${OPS_PER_S}" ]]; then
    OPS_PER_S="$(ycsb run 3000 | awk -F', ' '$1=="[OVERALL]" && $2 ~ /Throughput/ {printf "%d", $3}')"
    OPS_PER_S="${OPS_PER_S:-1000}"
  fi
  ycsb run $(( OPS_PER_S * SECONDS_EACH )) | awk -F', ' '
    $1=="[UPDATE]" && $2 ~ /^50th/ {u50=$3/1000} $1=="[UPDATE]" && $2 ~ /^99th/ {u99=$3/1000}
    $1=="[READ]" && $2 ~ /^50th/ {r50=$3/1000} $1=="[READ]" && $2 ~ /^99th/ {r99=$3/1000}
    $1=="[OVERALL]" && $2 ~ /Throughput/ {ops=$3}
    END {printf "%.3f %.3f %.3f %.3f %.0f\n", u50, u99, r50, r99, ops}'
}

sample_rss & BG+=($!)
"${FAHA_BIN_DIR}/faha_acked_writer" write --address "127.0.0.1:${PORT}" \
  --record "${WORK}/acked" --depth 8 --prefix soak: > "${WORK}/writer.log" 2>&1 &
WRITER=$!
BG+=("${WRITER}")

log "loading 20000 records (YCSB)"
ycsb load 20000 > /dev/null
log "phase before: ${SECONDS_EACH} s of load"
BEFORE="$(load)"
log "phase attack: ${SECONDS_EACH} s of load with every attack"
python3 "${REPO_ROOT}/bench/hostile_attack.py" --port "${PORT}" \
  --repl-ports "$((PORT + 101)),$((PORT + 102))" --password-file "${WORK}/password" \
  --seconds $(( SECONDS_EACH + 20 )) > "${WORK}/attack.out" 2>&1 &
ATTACK=$!
BG+=("${ATTACK}")
sleep 2
DURING="$(load)"

INFO="$(redis-cli -p "${PORT}" INFO 2> /dev/null | tr -d '\r')"
log "restarting the primary while the attack goes on"
kill -TERM "$(cat "${CLUSTER}/node0.pid")"
while kill -0 "$(cat "${CLUSTER}/node0.pid")" 2> /dev/null; do sleep 0.05; done
"${REPO_ROOT}/deploy/local-cluster" restart primary --dir "${CLUSTER}" > /dev/null
until redis-cli -p "${PORT}" PING 2> /dev/null | grep -q PONG; do sleep 0.01; done
T0="$(date +%s%N)"
until [[ "$(redis-cli -p "${PORT}" SET soak-after-restart v 2> /dev/null)" == OK ]]; do sleep 0.01; done
FIRST_MS=$(( ($(date +%s%N) - T0) / 1000000 ))

wait "${ATTACK}" || true
kill -TERM "${WRITER}" 2> /dev/null || true
wait "${WRITER}" 2> /dev/null || true
ACKED="$(wc -l < "${WORK}/acked")"
if "${FAHA_BIN_DIR}/faha_acked_writer" check --address "127.0.0.1:${PORT}" \
     --record "${WORK}/acked" > "${WORK}/check.log" 2>&1; then
  LOST=0
else
  LOST="$(grep -oE "[0-9]+ missing, [0-9]+ wrong" "${WORK}/check.log" | head -1)"
  LOST="${LOST:-see check output: $(tail -1 "${WORK}/check.log")}"
fi
field() { echo "${INFO}" | awk -F: -v k="$1" '$1==k {print $2}'; }

read -r b_s50 b_s99 b_g50 b_g99 b_rps <<< "${BEFORE}"
read -r d_s50 d_s99 d_g50 d_g99 d_rps <<< "${DURING}"
echo "# Hostile soak: a primary and two backups under every attack of issue 18"
echo
echo "Machine: $(bench_machine); data on ${DATA_PARENT} ($(findmnt -no FSTYPE -T "${DATA_PARENT}" | head -1))."
echo "Command: \`bench/hostile_soak.sh --dir ${DATA_PARENT}\` (SECONDS_EACH=${SECONDS_EACH}), $(date +%F)."
echo "Load: YCSB workload A (faha-bench over RESP, 20000 records of 1 KB, 8 threads) plus faha_acked_writer (8 in flight)."
echo
echo "| phase | YCSB A ops/s | UPDATE p50 ms | UPDATE p99 ms | READ p50 ms | READ p99 ms |"
echo "|---|---|---|---|---|---|"
echo "| before | ${b_rps} | ${b_s50} | ${b_s99} | ${b_g50} | ${b_g99} |"
echo "| attack | ${d_rps} | ${d_s50} | ${d_s99} | ${d_g50} | ${d_g99} |"
echo
echo "- UPDATE p99 during the attack / before: $(awk -v a="${d_s99}" -v b="${b_s99}" 'BEGIN {printf "%.2f", a / b}')"
echo "- primary restarted during the attack: first write acknowledged ${FIRST_MS} ms after its first PONG"
echo "- acknowledged writes (faha_acked_writer): ${ACKED}; lost: ${LOST}"
for i in 0 1 2; do
  echo "- node${i} peak RSS: $(awk -v n="node${i}" '$1==n && $2>m {m=$2} END {printf "%.0f MiB", m/1024}' "${WORK}/rss")"
done
echo "- primary before the restart: client_memory $(field client_memory), clients closed for output $(field clients_closed_output_limit), evicted $(field evicted_clients), pre-auth $(field clients_closed_preauth), body $(field clients_closed_body_timeout)"
echo "- attackers (connections opened, and seen closed; see bench/hostile_attack.py):"
sed 's/^/    /' "${WORK}/attack.out"
[[ "${LOST}" == 0 ]]
