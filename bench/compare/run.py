#!/usr/bin/env python3
"""Runs metagrad's bench_meta_step and the PyTorch versions (torch_meta_step.py) alternately,
`--rounds` times each, with the same thread count, and prints a table of medians per workload
with speedup = torch_ms / metagrad_ms (above 1: metagrad is faster).

First, a check that both sides compute the same thing: bench_meta_step exports its initial
weights and tasks (MG_BENCH_EXPORT), PyTorch loads them and compares the first meta-step's
mean query loss and the weights after the Adam step.

Usage (repository root, after building build/default (cmake --workflow --preset default)):
  python3 bench/compare/run.py [--threads 2] [--rounds 3] [--markdown out.md]
Needs only the standard library itself; the PyTorch side runs under --python (default: the
first of /usr/bin/python3, python3 that can import torch).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ORDER = ["sinusoid_so", "sinusoid_fo", "sinusoid_so_batched", "sinusoid_fo_batched",
         "omniglot_maxpool_so", "omniglot_maxpool_fo", "omniglot_strided_so", "omniglot_strided_fo"]
# metagrad's task-batched sinusoid step (MetaOptions::batch_tasks) against the same PyTorch
# workload: PyTorch's rows are keyed by the base name.
BATCHED = "_batched"


def base(name):
    return name[:-len(BATCHED)] if name.endswith(BATCHED) else name


def torch_python():
    for py in ("/usr/bin/python3", shutil.which("python3") or "", sys.executable):
        if py and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    sys.exit("no python3 with torch found (pass --python)")


def run_metagrad(exe, env, min_time, filt):
    cmd = [exe, "--benchmark_format=json", f"--benchmark_filter={filt}"]
    cmd.append(f"--benchmark_min_time={min_time}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        res[b["label"]] = {"ms": b["real_time"], "peak_MB": b.get("peak_MB"), "loss": b.get("loss")}
    return res


def run_torch(py, env, args, extra=()):
    torch_workloads = ",".join(dict.fromkeys(base(w) for w in args.workloads.split(",")))
    cmd = [py, os.path.join(HERE, "torch_meta_step.py"), "--threads", str(args.threads),
           "--workloads", torch_workloads, "--omniglot-tasks", str(args.omniglot_tasks), *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    if out.stderr.strip():
        print(out.stderr.strip(), file=sys.stderr)
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "default"))
    ap.add_argument("--python", default=None)
    ap.add_argument("--workloads", default=",".join(ORDER))
    ap.add_argument("--mg-min-time", type=float, default=1.0,
                    help="--benchmark_min_time for metagrad (an Omniglot step over it: 1 iteration)")
    ap.add_argument("--torch-min-time", type=float, default=1.0,
                    help="seconds per PyTorch (workload, variant), at least 3 steps")
    ap.add_argument("--omniglot-tasks", type=int, default=32,
                    help="Omniglot meta-batch on both sides (32 is the issue's; fewer for quick runs)")
    ap.add_argument("--omp-wait-policy", choices=["passive", "active"], default=None,
                    help="OMP_WAIT_POLICY for both sides (passive: idle OpenMP threads sleep "
                         "instead of spinning against OpenBLAS's threads; see docs/performance.md)")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()
    exe = os.path.join(args.build, "bench", "bench_meta_step")
    py = args.python or torch_python()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               MG_BENCH_OMNIGLOT_TASKS=str(args.omniglot_tasks))
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    wanted = args.workloads.split(",")
    filt = "BM_(Sinusoid|OmniglotConv4)MetaStep"

    # 1. Same computation: export from metagrad, check in PyTorch.
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([exe, f"--benchmark_filter={filt}", "--benchmark_min_time=0.01",
                        "--benchmark_format=json"], env=dict(env, MG_BENCH_EXPORT=d),
                       capture_output=True, check=True)
        checks = run_torch(py, env, args, ["--data", d, "--check-only"])
        check_lines = []
        for w in wanted:
            if w.endswith(BATCHED) and os.path.isdir(os.path.join(d, w)):
                lb, ll = (float(open(os.path.join(d, n, "loss.txt")).read()) for n in (w, base(w)))
                check_lines.append(f"- {w}: first-step loss {lb:.6f} vs the per-task loop's "
                                   f"{ll:.6f} (rel. diff {abs(lb - ll) / abs(ll):.1e})")
    for c in checks:
        if "error" in c and "first_loss" not in c:
            check_lines.append(f"- {c['workload']} {c['variant']}: {c['error']}")
            continue
        check_lines.append(
            f"- {c['workload']} {c['variant']}: first-step loss torch {c['first_loss']:.6f} vs "
            f"metagrad {c['metagrad_first_loss']:.6f} (rel. diff {c['loss_rel_diff']:.1e}); "
            f"max |weight diff| after the Adam step (conv biases, cancelled by batch norm, left out)  {c['max_weight_diff_after_step']:.1e}")
    print("Same-computation check (identical weights and tasks):")
    print("\n".join(check_lines), flush=True)

    # 2. Interleaved timing rounds.
    mg, tl, tv, peak = {}, {}, {}, {}
    for r in range(args.rounds):
        m = run_metagrad(exe, env, args.mg_min_time, filt)
        for k, v in m.items():
            mg.setdefault(k, []).append(v["ms"])
            peak.setdefault(k, []).append(v["peak_MB"])
        for rec in run_torch(py, env, args, ["--min-time", str(args.torch_min_time)]):
            if "ms_median" in rec:
                (tl if rec["variant"] == "loop" else tv).setdefault(rec["workload"], []).append(rec["ms_median"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(d, k):
        return statistics.median(d[k]) if k in d else None

    def f(x, fmt="{:.2f}"):
        return fmt.format(x) if x is not None else "n/a"

    rows = ["| workload | metagrad ms | torch loop ms | torch vmap ms | speedup vs loop | "
            "speedup vs vmap | metagrad peak MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k in ORDER:
        if k not in wanted:
            continue
        a, b, c = med(mg, k), med(tl, base(k)), med(tv, base(k))
        rows.append(f"| {k} | {f(a)} | {f(b)} | {f(c)} | "
                    f"{f(b / a if a and b else None)}x | {f(c / a if a and c else None)}x | "
                    f"{f(med(peak, k), '{:.0f}')} |")
    table = "\n".join(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(f"Threads: {args.threads}; OMP_WAIT_POLICY {env.get('OMP_WAIT_POLICY', 'unset')}; Omniglot meta-batch {args.omniglot_tasks}; rounds: {args.rounds} (medians of the rounds' "
                     "medians)\n\n" + table + "\n\nSame-computation check:\n\n" +
                     "\n".join(check_lines) + "\n")


if __name__ == "__main__":
    main()
