#!/usr/bin/env bash
# Run inside the guest (as root, by guest.sh's script): loads soft-RoCE and the
# NVDIMM drivers, gives eth0 the address 10.0.2.15, adds rxe0 on it, and mounts
# the NVDIMM with -o dax at /run/pmem (making the fsdax namespace and the ext4
# file system only when the NVDIMM is blank, so a second boot finds the data of
# the first). Prints what it set up. Source it: it exports FAHA_RDMA_ADDR and
# FAHA_PMEM_DIR.
set -euo pipefail
for m in crc32_generic crc32_pclmul udp_tunnel ip6_udp_tunnel virtio_net ib_core ib_uverbs \
         rdma_ucm rdma_rxe nfit nd_pmem dax_pmem ext4 crc32c_generic; do
  modprobe "$m" 2>/dev/null || modprobe "$m" || { echo "setup: modprobe $m failed" >&2; exit 1; }
done
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
rdma link add rxe0 type rxe netdev eth0
for _ in $(seq 1 50); do ibv_devices 2>/dev/null | grep -q rxe0 && break; sleep 0.1; done
ibv_devinfo -d rxe0 | grep -E "hca_id|transport|state|active_mtu" | sed 's/^/setup: /'
export FAHA_RDMA_ADDR=10.0.2.15

for _ in $(seq 1 50); do [ -e /dev/pmem0 ] || ndctl list -R 2>/dev/null | grep -q region && break; sleep 0.1; done
if ! ndctl list -N 2>/dev/null | grep -q fsdax; then
  echo "setup: blank NVDIMM: making an fsdax namespace and ext4"
  ndctl create-namespace -f -e namespace0.0 -m fsdax -a 2M > /dev/null
  mkfs.ext4 -q -F -b 4096 /dev/pmem0
fi
mkdir -p /run/pmem
mount -o dax /dev/pmem0 /run/pmem
mount | grep /run/pmem | sed 's/^/setup: /'
export FAHA_PMEM_DIR=/run/pmem
