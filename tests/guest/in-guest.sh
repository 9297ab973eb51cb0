#!/usr/bin/env bash
# Runs inside the soft-RoCE + NVDIMM guest (started by run-rdma-suite.sh).
# Usage: in-guest.sh BUILD_DIR suite|powercut-write|powercut-check
#   suite           ctest -L rdma (verbs, replication over verbs, rdma:// clients),
#                   then a primary + 2 backups over rxe with their logs on the DAX
#                   mount: granularity, a native-client workload and YCSB workload A
#                   (faha-bench) over rdma://, digests;
#                   then faha-drill (etcd failover) with replication over rxe and the
#                   nodes' logs on the DAX mount.
#   powercut-write  a cluster on the DAX mount and a writer recording every
#                   acknowledged write, until the host kills qemu.
#   powercut-check  after the power cut: each node's log on its own, every
#                   recorded acknowledged write must be there with its value.
set -euo pipefail
BUILD="$(cd "$1" && pwd)"; MODE="$2"
cd "$(dirname "$0")/../.."
source tests/guest/setup.sh
export FAHA_BIN_DIR="$BUILD" FAHA_TEST_HOST="$FAHA_RDMA_ADDR" FAHA_REQUIRE_RDMA=1
A="$FAHA_RDMA_ADDR"
cli() { "$BUILD/faha-cli" -h "$A" "$@"; }
# ctest writes into the build directory, which the guest sees read-only:
# lay a tmpfs-backed overlay over it.
modprobe overlay
mkdir -p /run/ovl/upper /run/ovl/work
mount -t overlay overlay -o "lowerdir=$BUILD,upperdir=/run/ovl/upper,workdir=/run/ovl/work" "$BUILD"
field() { tr -d '\r' | sed -n "s/^$1://p"; }

case "$MODE" in
  suite)
    echo "=== guest: ctest -L rdma ==="
    t0=$(date +%s)
    # Latency bounds meant for real hardware get TCG's slowdown.
    (cd "$BUILD" && FAHA_TEST_SLOWDOWN=5 ctest -L rdma --output-on-failure --timeout 400)
    echo "guest: rdma tests took $(( $(date +%s) - t0 )) s"
    echo "=== guest: primary + 2 backups over rxe, logs on the DAX mount ==="
    dir=/run/pmem/cluster
    rm -rf "$dir"
    ./deploy/local-cluster start --backups 2 --dir "$dir" --host "$A" --port 7400 \
      -- --repl_transport=rdma --metrics_port=-1 --rdma=on --segment_mb=16
    trap './deploy/local-cluster stop --dir '"$dir"' > /dev/null 2>&1 || true' EXIT
    for p in 7400 7401 7402; do
      g=$(cli -p "$p" INFO persistence | field log_granularity)
      echo "guest: node on port $p: PMem granularity $g, $(cli -p $p INFO server | field rdma)"
      [ "$g" = CACHE_LINE ] || { echo "guest: expected CACHE_LINE on the DAX mount"; exit 1; }
    done
    "$BUILD/faha_native_load" --address "rdma://$A:7400" --ops 20000 --connections 4 --depth 8 \
      --value_bytes 1000 --keyspace 5000 --connect_timeout_ms 20000 \
      | sed 's/^/guest: native client over rdma:\/\/ (3 nodes, 2 sync backups): /'
    # The YCSB driver over rdma://: workload A (load, then 50% reads / 50%
    # updates, zipfian) against the same cluster; any failed operation fails it.
    ycsb=(-P bench/workloads/workloada -p "target=rdma://$A:7400" -p recordcount=2000
          -p operationcount=4000 -p threadcount=2 -p status.interval=0 -p failonerror=true)
    "$BUILD/faha-bench" load "${ycsb[@]}" > /tmp/ycsb-load.txt
    "$BUILD/faha-bench" run "${ycsb[@]}" > /tmp/ycsb-run.txt
    grep -E '^\[(OVERALL|READ|UPDATE)\], (Throughput|99thPercentile|Return)' /tmp/ycsb-run.txt \
      | sed 's/^/guest: faha-bench workload A over rdma:\/\/: /'
    # Backups apply a little behind what they made durable: poll for equal digests.
    for _ in $(seq 1 100); do
      rm -f /tmp/digests
      for p in 7400 7401 7402; do cli -p "$p" FAHA.DIGEST | tr '\n' ' ' >> /tmp/digests; echo >> /tmp/digests; done
      [ "$(sort -u /tmp/digests | wc -l)" = 1 ] && break
      sleep 0.3
    done
    sed 's/^/guest: FAHA.DIGEST: /' /tmp/digests
    [ "$(sort -u /tmp/digests | wc -l)" = 1 ] || { echo "guest: digests differ"; exit 1; }
    ./deploy/local-cluster status --dir "$dir"
    ./deploy/local-cluster stop --dir "$dir" > /dev/null
    rm -rf "$dir"
    echo "=== guest: faha-drill over rxe, logs on the DAX mount ==="
    # TCG runs a few times slower than the host: longer failure detection and
    # leases keep it from taking a slow node for a dead one, and one client
    # leaves a restarted node the CPU to catch up (3 nodes, etcd and the
    # drill share 2 emulated CPUs; catch-up must outrun the writes). A restarted
    # etcd has taken up to 20 s to answer there.
    rm -rf /run/pmem/drill
    "$BUILD/faha-drill" --repl_transport=rdma --host "$A" --netns=off --dir /run/pmem/drill \
      --faults=kill-primary,kill-backup,stop-primary,restart-etcd --settle_ms=2000 --clients=1 \
      --etcd_start_timeout_ms=60000 \
      --server_flags="--failover_timeout_ms=1000 --read_lease_ms=600 --heartbeat_ms=100" \
      | sed 's/^/guest: drill: /' || {
        for f in /run/pmem/drill/*.log; do echo "--- $f"; tail -n 60 "$f"; done
        echo "guest: the drill failed"; exit 1; }
    echo "guest: suite passed"
    ;;
  powercut-write)
    dir=/run/pmem/powercut
    rm -rf "$dir"
    ./deploy/local-cluster start --backups 2 --dir "$dir" --host "$A" --port 7500 \
      -- --repl_transport=rdma --metrics_port=-1 --rdma=on --segment_mb=16
    echo "guest: cluster up; writing until the power is cut"
    "$BUILD/faha_acked_writer" write --address "rdma://$A:7500" --record "$FAHA_GUEST_OUT/acked.txt" \
      --depth 8
    ;;
  powercut-check)
    dir=/run/pmem/powercut
    for i in 0 1 2; do
      "$BUILD/faha-server" --bind "$A" --port 7600 --data_dir "$dir/node$i" --metrics_port=-1 \
        --rdma=off --segment_mb=16 > "/tmp/check$i.log" 2>&1 &
      pid=$!
      for _ in $(seq 1 600); do cli -p 7600 PING > /dev/null 2>&1 && break; sleep 0.1; done
      grep -E "recovery|granularity" "/tmp/check$i.log" | sed "s/^/guest: node$i alone: /"
      "$BUILD/faha_acked_writer" check --address "$A:7600" --record "$FAHA_GUEST_OUT/acked.txt" \
        | sed "s/^/guest: node$i alone: /"
      kill "$pid"; wait "$pid" || true
    done
    echo "guest: every acknowledged write survived the power cut on all three nodes"
    ;;
  *) echo "in-guest.sh: unknown mode $MODE" >&2; exit 2 ;;
esac
