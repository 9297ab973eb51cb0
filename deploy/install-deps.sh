#!/usr/bin/env bash
# Installs every Debian 12 package FaHA needs to build, test, benchmark and demo.
# Idempotent: skips apt entirely when everything is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libpmem2-dev libpmem-dev
  libxxhash-dev libssl-dev
  libgflags-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev clang-format
  redis-tools redis-server
  curl procps psmisc iproute2 gnuplot-nox python3 python3-redis python3-hiredis
  liblua5.1-0-dev lua5.1 lua-cjson lua-bitop
  etcd-server etcd-client libcurl4-openssl-dev nlohmann-json3-dev
  libibverbs-dev librdmacm-dev rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest
  qemu-system-x86 linux-image-amd64 busybox-static cpio ndctl e2fsprogs kmod
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the packaged redis-server from starting a system service on port 6379;
# our scripts start their own instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
