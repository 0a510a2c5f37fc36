#!/usr/bin/env python3
"""Splits a CPU profile of the Envoy under test (PERF=1 scripts/bench-envoy) into where the time went.

Usage: perf-split.py RUN.perf.data CPU_US_PER_REQ [RUN.perf.data CPU_US_PER_REQ ...]
       (CPU_US_PER_REQ: that run's "CPU µs/req", column 8 of target/bench-envoy/results.tsv)

Each sample is put in one bucket, in µs per request:
  wasm code          the leaf frame is V8-compiled wasm (perf names it after /tmp/perf-PID.map)
  called from wasm   a wasm frame is on the stack below the leaf: host calls and V8 runtime helpers
  kernel             the leaf is in the kernel (sockets, epoll)
  envoy other        everything else: Envoy's own work, including entering the VM
The Envoy wheel is stripped, so there are no function names; the buckets need none.
"""
import collections
import subprocess
import sys


def split(path):
    out = subprocess.run(["perf", "script", "-i", path], capture_output=True, text=True, check=True).stdout
    buckets = collections.Counter()
    stack = []

    def flush():
        if not stack:
            return
        if "perf-" in stack[0]:
            buckets["wasm code"] += 1
        elif any("perf-" in frame for frame in stack[1:]):
            buckets["called from wasm"] += 1
        elif "kernel" in stack[0]:
            buckets["kernel"] += 1
        else:
            buckets["envoy other"] += 1

    for line in out.splitlines():
        if not line.strip():
            flush()
            stack = []
        elif line[0] in " \t":
            stack.append(line)
    flush()
    return buckets


def main(argv):
    if len(argv) < 3 or len(argv) % 2 == 0:
        sys.exit(__doc__)
    names = ["envoy other", "kernel", "wasm code", "called from wasm"]
    print(f"{'run':40} " + " ".join(f"{n:>16}" for n in names) + "   (µs per request)")
    for path, cpu in zip(argv[1::2], argv[2::2]):
        b = split(path)
        total = sum(b.values()) or 1
        print(f"{path.split('/')[-1]:40} " + " ".join(f"{b[n] / total * float(cpu):16.1f}" for n in names))


if __name__ == "__main__":
    main(sys.argv)
