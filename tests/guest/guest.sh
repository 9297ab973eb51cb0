#!/usr/bin/env bash
# Boots a throw-away qemu guest (TCG) running Debian's own kernel, with the host's
# root filesystem shared read-only over 9p, a virtio NIC for soft-RoCE (rxe) and an
# emulated NVDIMM, and runs one script inside it as root. Real RDMA verbs and real
# DAX persistent memory on a machine that has neither (../shared/notes/soft-roce-vm.md).
#
# Usage: tests/guest/guest.sh [--nvdimm FILE] [--out DIR] [--timeout S] [--kill-after S] \
#            SCRIPT [ARGS...]
#   SCRIPT runs in the guest with the repository at the same path as on the host;
#   DIR (default build-guest/out) is writable from the guest at the same path.
#   --nvdimm FILE  backing file of the NVDIMM (created sparse, 512 MiB, if missing;
#                  it keeps its bytes across boots and when qemu is killed).
#   --kill-after S kill qemu with SIGKILL S seconds after boot: a power cut.
#   --kill-when-lines FILE N   the same, once FILE (under DIR) has N lines.
# Exit status: the script's, 124 if the guest timed out, 137 after --kill-after.
# The guest has no route out (-netdev user,restrict=on): it can reach only itself.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
KVER="$(ls /lib/modules | sort -V | tail -1)"
KERNEL="/boot/vmlinuz-$KVER"
WORK="$REPO/build-guest"
OUT="$WORK/out"
NVDIMM="$WORK/nvdimm.img"
TIMEOUT=540
KILL_AFTER=""
KILL_FILE=""
KILL_LINES=0
while [ $# -gt 0 ]; do
  case "$1" in
    --nvdimm) NVDIMM="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --kill-after) KILL_AFTER="$2"; shift 2 ;;
    --kill-when-lines) KILL_FILE="$2"; KILL_LINES="$3"; shift 3 ;;
    --) shift; break ;;
    -*) echo "guest.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: guest.sh [options] SCRIPT [ARGS...]" >&2; exit 2; }
[ -r "$KERNEL" ] || { echo "guest.sh: no kernel $KERNEL (install linux-image-amd64)" >&2; exit 1; }
mkdir -p "$WORK" "$OUT"
OUT="$(cd "$OUT" && pwd)"

# The initramfs: busybox and the modules needed to mount the host root over 9p.
INITRD="$WORK/initrd-$KVER.cpio.gz"
if [ ! -s "$INITRD" ] || [ "$0" -nt "$INITRD" ]; then
  stage="$(mktemp -d)"
  mkdir -p "$stage"/{bin,dev,proc,sys,root9,keep,out,lib/modules}
  cp /bin/busybox "$stage/bin/busybox"
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
           netfs fscache 9pnet 9pnet_virtio 9p; do
    f="$(find "/lib/modules/$KVER" -name "$m.ko*" | head -1)"
    [ -n "$f" ] || { echo "guest.sh: module $m missing for $KVER" >&2; exit 1; }
    case "$f" in
      *.xz) xz -dc "$f" > "$stage/lib/modules/$m.ko" ;;
      *.zst) zstd -dcq "$f" > "$stage/lib/modules/$m.ko" ;;
      *) cp "$f" "$stage/lib/modules/$m.ko" ;;
    esac
    echo "$m" >> "$stage/lib/modules/order"
  done
  cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "init: insmod $m failed"; done
arg() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
REPO=$(arg faha_repo); OUT=$(arg faha_out)
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostroot /root9 || { echo "init: 9p root failed"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,rw,cache=none out /out || { echo "init: 9p out failed"; poweroff -f; }
mount -o bind /root9$REPO /keep
for d in tmp run; do mount -t tmpfs -o mode=1777 tmpfs /root9/$d; done
mkdir -p /root9$REPO /root9$OUT
mount -o bind /keep /root9$REPO
mount -o bind /out /root9$OUT
mount -t proc proc /root9/proc; mount -t sysfs sys /root9/sys; mount -t devtmpfs dev /root9/dev
mkdir -p /root9/dev/pts /root9/dev/shm; mount -t devpts devpts /root9/dev/pts; mount -t tmpfs tmpfs /root9/dev/shm
echo "FAHA_GUEST_BOOTED"
chroot /root9 /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
  /bin/bash "$OUT/.cmd.sh"
rc=$?
echo "FAHA_GUEST_EXIT=$rc"
sync
poweroff -f
INIT
  chmod +x "$stage/init"
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"
  rm -rf "$stage"
fi

# The NVDIMM backing file: a 16 MiB multiple plus the 128 KiB label area.
if [ ! -e "$NVDIMM" ]; then
  truncate -s 524416K "$NVDIMM"
fi

# The command, written where the guest can read it.
{
  echo "cd '$REPO'"
  printf 'export FAHA_GUEST=1 FAHA_GUEST_OUT=%q\n' "$OUT"
  printf 'exec'; printf ' %q' "$@"; echo
} > "$OUT/.cmd.sh"

log="$OUT/console.log"
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2
  -machine pc,nvdimm=on -m 3G,slots=2,maxmem=5G
  -object "memory-backend-file,id=nv0,share=on,mem-path=$NVDIMM,size=524416K"
  -device nvdimm,id=nvd0,memdev=nv0,label-size=128K
  -fsdev local,id=r,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=r,mount_tag=hostroot
  -fsdev "local,id=o,path=$OUT,security_model=none,multidevs=remap"
  -device virtio-9p-pci,fsdev=o,mount_tag=out
  -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0,romfile=
  -kernel "$KERNEL" -initrd "$INITRD"
  -append "console=ttyS0 panic=-1 quiet loglevel=3 faha_repo=$REPO faha_out=$OUT"
  -nographic -no-reboot)
start=$(date +%s)
set +e
if [ -n "$KILL_AFTER" ] || [ -n "$KILL_FILE" ]; then
  "${qemu[@]}" > "$log" 2>&1 &
  qpid=$!
  # The power cut is timed from the guest's boot, not qemu's start.
  for _ in $(seq 1 600); do grep -q FAHA_GUEST_BOOTED "$log" 2>/dev/null && break; sleep 0.2; done
  if [ -n "$KILL_AFTER" ]; then sleep "$KILL_AFTER"; fi
  if [ -n "$KILL_FILE" ]; then
    for _ in $(seq 1 $((TIMEOUT * 5))); do
      [ -f "$KILL_FILE" ] && [ "$(wc -l < "$KILL_FILE")" -ge "$KILL_LINES" ] && break
      kill -0 "$qpid" 2>/dev/null || break
      sleep 0.2
    done
  fi
  if ! kill -KILL "$qpid" 2>/dev/null; then
    cat "$log"
    echo "guest.sh: the guest ended before the power cut" >&2
    exit 1
  fi
  wait "$qpid" 2>/dev/null
  cat "$log"
  echo "guest.sh: qemu killed (power cut) after $(( $(date +%s) - start )) s"
  exit 137
fi
timeout --foreground -k 10 "$TIMEOUT" "${qemu[@]}" 2>&1 | tee "$log"
qrc=${PIPESTATUS[0]}
set -e
rc=$(sed -n 's/.*FAHA_GUEST_EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
echo "guest.sh: guest ran $(( $(date +%s) - start )) s"
if [ "$qrc" = 124 ]; then echo "guest.sh: guest timed out after $TIMEOUT s" >&2; exit 124; fi
[ -n "$rc" ] || { echo "guest.sh: the guest ended without an exit status (qemu $qrc)" >&2; exit 1; }
exit "$rc"
