#!/usr/bin/env bash
# The RDMA + persistent-memory suite, in one command (tests/run.sh runs it):
# boots a TCG qemu guest with Debian's kernel, soft-RoCE (rxe) on a virtio NIC
# and an emulated NVDIMM mounted -o dax, three times:
#   1. ctest -L rdma (verbs streams, replication tests over verbs, rdma://
#      clients) and a primary + 2 backups over rxe with their logs on the DAX
#      mount (PMem granularity must be CACHE_LINE), workload and digests, and
#      faha-drill (etcd failover, replication over rxe, logs on DAX);
#   2. a cluster on the DAX mount taking writes, each acknowledged one recorded
#      on the host, until qemu itself is killed (a power cut);
#   3. a new boot on the same NVDIMM backing file: each node recovers alone and
#      must hold every recorded acknowledged write.
# It is emulation: it proves correctness, not speed.
# Usage: tests/guest/run-rdma-suite.sh [BUILD_DIR]   (default build-release)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD="${1:-build-release}"
[ -x "$BUILD/faha-server" ] || { echo "run-rdma-suite: build $BUILD first" >&2; exit 1; }
OUT="build-guest/out"
mkdir -p "$OUT"
start=$(date +%s)
rm -f build-guest/nvdimm.img "$OUT/acked.txt"

echo "=== guest 1 of 3: RDMA tests and a cluster over rxe on DAX ==="
./tests/guest/guest.sh --timeout 720 tests/guest/in-guest.sh "$BUILD" suite > "$OUT/suite.log" 2>&1 \
  || { cat "$OUT/suite.log"; echo "run-rdma-suite: the RDMA suite failed"; exit 1; }
# The summary: every test's verdict, the devices, the cluster's figures.
grep -E "^ *[0-9]+/[0-9]+ Test|tests passed|RDMA device|^guest|^setup|^(primary|backup)" "$OUT/suite.log"
echo "=== guest 2 of 3: writes until qemu is killed ==="
set +e
./tests/guest/guest.sh --timeout 300 --kill-when-lines "$OUT/acked.txt" 400 \
  tests/guest/in-guest.sh "$BUILD" powercut-write > "$OUT/powercut-write.log" 2>&1
rc=$?
set -e
grep -E "guest|local-cluster|primary|backup" "$OUT/powercut-write.log" | grep -v FAHA_GUEST | tail -8
[ "$rc" = 137 ] || { cat "$OUT/powercut-write.log"; echo "run-rdma-suite: no power cut (exit $rc)"; exit 1; }
echo "run-rdma-suite: power cut with $(wc -l < "$OUT/acked.txt") acknowledged writes recorded"
echo "=== guest 3 of 3: recovery on the same NVDIMM ==="
./tests/guest/guest.sh --timeout 300 tests/guest/in-guest.sh "$BUILD" powercut-check \
  | grep -v -E '^\[ *[0-9]+\.[0-9]+\]|SeaBIOS|Booting from ROM|iPXE'
echo "run-rdma-suite: passed in $(( $(date +%s) - start )) s"
