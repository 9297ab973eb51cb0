#!/usr/bin/env python3
"""sync_breakdown.py: where the time of each durable write (pwritev2) goes.

Reads `perf script` output of a recording of the block layer and pwritev2
tracepoints, and splits each pwritev2 call made by threads whose name starts
with PREFIX into: system call entry to the data write's issue, the data write
at the device, its completion to the cache flush's issue (on a disk without
FUA the block layer's kblockd worker issues the flush), the flush at the
device, and the flush's completion to the return. Only calls that issued
exactly one data write and one flush are split (calls that also wrote file
system metadata, WSM, are not); every call is counted by the requests it
issued, and the whole-call times of all of them are printed too.

  perf record -a -e block:block_rq_issue -e block:block_rq_complete \\
      -e syscalls:sys_enter_pwritev2 -e syscalls:sys_exit_pwritev2 -o sync.data -- sleep 10
  perf script -i sync.data | bench/sync_breakdown.py faha [DEVICE]

perf keeps 15 characters of a thread's name (faha_device_limit is
faha_device_lim). DEVICE (major,minor as perf prints it, e.g. 254,0) keeps
only that disk's requests; without it every disk's count. Prints p50 and p90
in microseconds. docs/bench/write-path.md has figures.
"""
import collections
import re
import sys

LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+(\S+):\s*(.*)")


def quantiles(values):
    if not values:
        return "-"
    s = sorted(values)
    return "%d / %d" % (round(s[len(s) // 2]), round(s[int(len(s) * 0.9)]))


def sector_of(fields):
    """The start sector of a block request's trace line (after its cmd field)."""
    m = re.search(r"\) (\d+) \+", fields)
    return m.group(1) if m else None


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: perf script -i FILE | sync_breakdown.py THREAD_NAME_PREFIX [DEVICE]")
    prefix = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) == 3 else None
    open_calls = {}  # tid -> [enter time, events meanwhile]
    calls = []
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        comm, tid, t, event, rest = m.groups()
        t = float(t) * 1e6
        if event == "syscalls:sys_enter_pwritev2" and comm.startswith(prefix):
            open_calls[tid] = [t, []]
        elif event == "syscalls:sys_exit_pwritev2" and tid in open_calls:
            t0, events = open_calls.pop(tid)
            calls.append((t0, t, events))
        elif event.startswith("block:") and (device is None or rest.split()[0] == device):
            for pending in open_calls.values():
                pending[1].append((t, event, rest))
    kinds = collections.Counter()
    parts = collections.defaultdict(list)
    every_call = []
    for t0, t1, events in calls:
        every_call.append(t1 - t0)
        issued = [(t, r.split()[1], r) for t, e, r in events if e == "block:block_rq_issue"]
        done = [(t, r.split()[1], r) for t, e, r in events if e == "block:block_rq_complete"]
        kinds[" ".join(k for _, k, _ in issued) or "(none)"] += 1
        if [k for _, k, _ in issued] != ["WS", "FF"]:
            continue
        sector = sector_of(issued[0][2])
        write_done = [t for t, k, r in done
                      if k == "WS" and t >= issued[0][0] and sector_of(r) == sector]
        flush_done = [t for t, k, _ in done if k == "FF" and t >= issued[1][0]]
        if not write_done or not flush_done:
            continue
        parts["total"].append(t1 - t0)
        parts["entry -> write issued"].append(issued[0][0] - t0)
        parts["write at the device"].append(write_done[0] - issued[0][0])
        parts["write done -> flush issued"].append(issued[1][0] - write_done[0])
        parts["flush at the device"].append(flush_done[0] - issued[1][0])
        parts["flush done -> return"].append(t1 - flush_done[0])
    print("pwritev2 calls by %s*: %d, p50 / p90 us %s" % (prefix, len(calls), quantiles(every_call)))
    for kind, n in kinds.most_common(5):
        print("  %6d issued %s" % (n, kind))
    print("calls that issued one write and one flush: %d (p50 / p90 us)" % len(parts["total"]))
    for name in ("total", "entry -> write issued", "write at the device",
                 "write done -> flush issued", "flush at the device", "flush done -> return"):
        print("  %-28s %s" % (name, quantiles(parts[name])))


if __name__ == "__main__":
    main()
