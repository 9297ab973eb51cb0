#!/usr/bin/env bash
# hostile_limits.sh: issue 18's memory attack on one server at default flags
# (a password from a 0600 file aside), under a memory cap so that a failure
# fails the run and not the machine: 100 clients that each ask for 250 MB of
# replies and never read, and 1,000 unauthenticated clients that each try to
# send 8 MiB (bench/hostile_limits.py). Prints another client's PING p50/p99
# before and during the attack, the server's peak RSS and what it closed.
#
# Run: bench/hostile_limits.sh [--dir DIR] [--cap-mb N]   (release build in
# build-release or build; N defaults to 2048: maxmemory-clients, 1 GiB by
# default, plus room for the data and the log's mappings)
# Environment: SECONDS_EACH (10), GREEDY (100), UNAUTH (1000), FAHA_BIN_DIR.
# The cap is a memory cgroup (v1 or v2) when this runs as root, else none (said
# so). Loopback only; the server is stopped by pid at exit.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "${REPO_ROOT}/bench/lib.sh"
DATA_PARENT=/var/tmp
CAP_MB=2048
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) DATA_PARENT="$2"; shift 2 ;;
    --cap-mb) CAP_MB="$2"; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "hostile_limits.sh: unknown argument $1 (--dir DIR, --cap-mb N)" >&2; exit 2 ;;
  esac
done
if [[ -z "${FAHA_BIN_DIR:-}" ]]; then
  FAHA_BIN_DIR="${REPO_ROOT}/build-release"
  [[ -x "${FAHA_BIN_DIR}/faha-server" ]] || FAHA_BIN_DIR="${REPO_ROOT}/build"
fi
bench_need hostile_limits.sh "${FAHA_BIN_DIR}/faha-server"
command -v python3 > /dev/null || { echo "hostile_limits.sh: python3 missing (deploy/install-deps.sh)" >&2; exit 1; }

bench_workdir "${DATA_PARENT}" faha-limits
CGROUP=""
cleanup_cgroup() { [[ -n "${CGROUP}" ]] && rmdir "${CGROUP}" 2> /dev/null || true; }
( umask 077; head -c 24 /dev/urandom | base64 > "${work}/password" )
# A memory cgroup for the server alone.
if [[ -w /sys/fs/cgroup/memory ]]; then
  CGROUP="/sys/fs/cgroup/memory/faha-limits-$$"
  mkdir "${CGROUP}"
  echo $((CAP_MB << 20)) > "${CGROUP}/memory.limit_in_bytes"
elif [[ -w /sys/fs/cgroup/cgroup.subtree_control ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CGROUP="/sys/fs/cgroup/faha-limits-$$"
  mkdir "${CGROUP}"
  echo $((CAP_MB << 20)) > "${CGROUP}/memory.max"
fi
trap '[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null && wait "$pid" 2> /dev/null; sleep 0.2; cleanup_cgroup; rm -rf "$work"' EXIT

PORT="$(bench_port)"
if [[ -n "${CGROUP}" ]]; then
  echo "memory cap: ${CAP_MB} MiB (${CGROUP})"
  sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "${CGROUP}" \
    "${FAHA_BIN_DIR}/faha-server" --port="${PORT}" --data_dir="${work}/data" \
    --requirepass_file="${work}/password" > "${work}/server.log" 2>&1 &
else
  echo "memory cap: none (no writable memory cgroup; run as root for one)"
  "${FAHA_BIN_DIR}/faha-server" --port="${PORT}" --data_dir="${work}/data" \
    --requirepass_file="${work}/password" > "${work}/server.log" 2>&1 &
fi
pid=$!
export REDISCLI_AUTH="$(cat "${work}/password")"
for _ in $(seq 300); do
  if (exec 3<> "/dev/tcp/127.0.0.1/${PORT}") 2> /dev/null; then break; fi
  sleep 0.05
done
echo "machine: $(bench_machine)"
echo "command: bench/hostile_limits.sh --cap-mb ${CAP_MB} (GREEDY=${GREEDY:-100} UNAUTH=${UNAUTH:-1000} SECONDS_EACH=${SECONDS_EACH:-10})"
python3 "${REPO_ROOT}/bench/hostile_limits.py" --port "${PORT}" --pid "${pid}" \
  --password-file "${work}/password" --greedy "${GREEDY:-100}" --unauth "${UNAUTH:-1000}" \
  --seconds "${SECONDS_EACH:-10}"
kill -0 "${pid}" 2> /dev/null || { echo "hostile_limits.sh: the server died (log below)"; tail -20 "${work}/server.log"; exit 1; }
echo "server log, lines about closed clients:"
grep -c -E "closing client|more clients since" "${work}/server.log" | sed "s/^/  lines: /"
grep -m 6 -E "closing client|more clients since" "${work}/server.log" | sed "s/^/  /"
