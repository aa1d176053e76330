"""Run a command and report its wall time and peak memory.

Peak memory is the largest sum of resident set sizes over the command's whole
process tree (Snakemake, its jobs and their ranks), sampled every
``--interval`` seconds with psutil, which is what a 2-core machine has to
hold at once. ``/usr/bin/time`` reports only the largest single process.

Usage: ``python benchmarks/run_measured.py --out measured.json -- snakemake ...``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and all its descendants."""
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file for wall_s / peak_rss_GiB")
    ap.add_argument("--interval", type=float, default=1.0, help="sampling period [s]")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("no command given (put it after --)")
    t0 = time.time()
    child = subprocess.Popen(cmd)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(args.interval)
    wall = time.time() - t0
    result = {"command": cmd, "returncode": child.returncode, "wall_s": round(wall, 1),
              "peak_rss_GiB": round(peak / 2**30, 3),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result), file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
