#!/usr/bin/env python3
"""Two builds of one Google Benchmark binary, run in alternation on the same machine.

Each round runs the old binary, then the new one, on the same filter; the table gives each
benchmark's minimum and median real time over the rounds and old/new of the minima (above 1:
the new build is faster). Alternating, rather than running one binary's rounds and then the
other's, spreads the machine's drift over both, which is what a shared 2-core machine needs.

    python3 bench/compare/ab.py --rounds 5 --filter BM_SinusoidMetaStep OLD_BINARY NEW_BINARY
"""
import argparse
import json
import statistics
import subprocess

UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def run(binary, filt, min_time):
    out = subprocess.run(
        [binary, f"--benchmark_filter={filt}", f"--benchmark_min_time={min_time}",
         "--benchmark_format=json"],
        capture_output=True, text=True, check=True).stdout
    return {b["name"]: b["real_time"] * UNIT_US[b["time_unit"]]
            for b in json.loads(out)["benchmarks"] if b.get("run_type") != "aggregate"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--filter", default=".")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", default="0.3", help="--benchmark_min_time per run (seconds)")
    a = ap.parse_args()
    times = {}
    for _ in range(a.rounds):
        for which, binary in (("old", a.old), ("new", a.new)):
            for name, us in run(binary, a.filter, a.min_time).items():
                times.setdefault(name, {"old": [], "new": []})[which].append(us)
    print(f"| benchmark | old min / median us | new min / median us | old/new (min) |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        o, n = t["old"], t["new"]
        print(f"| {name} | {min(o):.2f} / {statistics.median(o):.2f} | "
              f"{min(n):.2f} / {statistics.median(n):.2f} | {min(o) / min(n):.3f} |")


if __name__ == "__main__":
    main()
