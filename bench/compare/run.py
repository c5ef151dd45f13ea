#!/usr/bin/env python3
"""Runs metagrad's bench_meta_step and the PyTorch versions (torch_meta_step.py) alternately,
`--rounds` times each, with the same thread count, and prints a table of medians per workload
with speedup = torch_ms / metagrad_ms (above 1: metagrad is faster).

First, a check that both sides compute the same thing: bench_meta_step exports its initial
weights and tasks (MG_BENCH_EXPORT), PyTorch loads them and compares the first meta-step's
mean query loss and the weights after the Adam step.

Usage (repository root, after building build/default (cmake --workflow --preset default)):
  python3 bench/compare/run.py [--threads 2] [--rounds 3] [--markdown out.md]
  python3 bench/compare/run.py --device cuda [--bench-bin PATH/bench_meta_step]
--device cuda runs both sides on the GPU (MG_BENCH_DEVICE=cuda for metagrad, --device cuda for
PyTorch: synchronised step times, peak device memory of both; TF32 off on both);
--bench-bin names the benchmark binary instead of BUILD/bench/bench_meta_step.
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
         "sinusoid_so_threaded", "sinusoid_fo_threaded",
         "omniglot_maxpool_so", "omniglot_maxpool_fo", "omniglot_strided_so", "omniglot_strided_fo",
         "omniglot_maxpool_so_batched", "omniglot_maxpool_fo_batched",
         "omniglot_strided_so_batched", "omniglot_strided_fo_batched",
         "omniglot_maxpool_so_threaded", "omniglot_maxpool_fo_threaded",
         "omniglot_strided_so_threaded", "omniglot_strided_fo_threaded"]
# metagrad's other ways to run the same meta-batch, against the same PyTorch workload (PyTorch's
# rows are keyed by the base name): task-batched steps (MetaOptions::batch_tasks; for Omniglot
# the tasks' convolutions as one grouped convolution), and the per-task loop with its tasks on
# all the threads at once (MetaOptions::task_threads; CPU only, so not in the cuda default).
BATCHED, THREADED = "_batched", "_threaded"
# Runs of either side that failed (a crash, an exit status); any makes the exit status 1.
FAILED = []


def base(name):
    for suffix in (BATCHED, THREADED):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def bench_name(label):
    """bench_meta_step's benchmark name (without /real_time) of a workload label."""
    mode = {"": (0, 0), BATCHED: (1, 0), THREADED: (0, 1)}[label[len(base(label)):]]
    parts = base(label).split("_")
    so = 1 if parts[-1] == "so" else 0
    tail = f"batched:{mode[0]}/threaded:{mode[1]}"
    if parts[0] == "sinusoid":
        return f"BM_SinusoidMetaStep/second_order:{so}/{tail}"
    strided = 1 if parts[1] == "strided" else 0
    return f"BM_OmniglotConv4MetaStep/strided:{strided}/second_order:{so}/{tail}"


def torch_python(gpu=False):
    # For the GPU, a torch that sees one (a system python3's may be a CPU build).
    tests = ["import torch; assert torch.cuda.is_available()"] if gpu else []
    for test in tests + ["import torch"]:
        for py in ("/usr/bin/python3", shutil.which("python3") or "", sys.executable):
            if py and subprocess.run([py, "-c", test], capture_output=True).returncode == 0:
                return py
    sys.exit("no python3 with torch found (pass --python)")


def run_metagrad(exe, env, min_time, filt):
    """{label: {"ms", "peak_MB", "loss"}} or, for a benchmark that skipped itself with an
    error (an op failing on the GPU, say), {label: {"error": message}}; {} if it crashed."""
    cmd = [exe, "--benchmark_format=json", f"--benchmark_filter={filt}"]
    cmd.append(f"--benchmark_min_time={min_time}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"bench_meta_step exited with {out.returncode}:\n{out.stderr.strip()[-2000:]}",
              file=sys.stderr)
        FAILED.append("bench_meta_step")
        return {}
    res = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        label = b.get("label", b["name"])
        if b.get("error_occurred"):
            res[label] = {"error": b.get("error_message", "error")}
        else:
            res[label] = {"ms": b["real_time"], "peak_MB": b.get("peak_MB"), "loss": b.get("loss"),
                          "peak_device_MB": b.get("peak_device_MB"),
                          "work": [b.get("dispatches_per_step"), b.get("kernels_per_step"),
                                   b.get("blas_dnn_calls_per_step"), b.get("host_waits_per_step"),
                                   b.get("host_ms_per_step")]}
    return res


def run_torch(py, env, args, extra=()):
    torch_workloads = ",".join(dict.fromkeys(base(w) for w in args.workloads.split(",")))
    cmd = [py, os.path.join(HERE, "torch_meta_step.py"), "--threads", str(args.threads),
           "--workloads", torch_workloads, "--omniglot-tasks", str(args.omniglot_tasks),
           "--device", args.device, *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.stderr.strip():
        print(out.stderr.strip(), file=sys.stderr)
    if out.returncode != 0:  # keep what it printed before failing (one JSON line per result)
        print(f"torch_meta_step.py exited with {out.returncode}", file=sys.stderr)
        FAILED.append("torch_meta_step.py")
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "default"))
    ap.add_argument("--bench-bin",
                    help="the bench_meta_step binary (default: BUILD/bench/bench_meta_step)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where both sides run (cuda: step times synchronised, peak device memory)")
    ap.add_argument("--python", default=None)
    ap.add_argument("--workloads", default=None,
                    help="comma-separated rows (default: all; on cuda all but *_threaded)")
    ap.add_argument("--mg-min-time", type=float, default=None,
                    help="--benchmark_min_time for metagrad (an Omniglot step over it: 1 "
                         "iteration); default 1.0 on cpu, 0.5 on cuda")
    ap.add_argument("--torch-min-time", type=float, default=None,
                    help="seconds per PyTorch (workload, variant), at least 3 steps; default "
                         "1.0 on cpu, 0.5 on cuda")
    ap.add_argument("--omniglot-tasks", type=int, default=32,
                    help="Omniglot meta-batch on both sides (32 is the issue's; fewer for quick runs)")
    ap.add_argument("--omp-wait-policy", choices=["passive", "active"], default=None,
                    help="OMP_WAIT_POLICY for both sides (passive: idle OpenMP threads sleep "
                         "instead of spinning against OpenBLAS's threads; see docs/performance.md)")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()
    gpu = args.device == "cuda"
    # GPU steps take milliseconds: half a second is hundreds of them (and keeps the whole run
    # inside scripts/device-check's budget).
    for k in ("mg_min_time", "torch_min_time"):
        if getattr(args, k) is None:
            setattr(args, k, 0.5 if gpu else 1.0)
    exe = args.bench_bin or os.path.join(args.build, "bench", "bench_meta_step")
    py = args.python or torch_python(gpu)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               MG_BENCH_OMNIGLOT_TASKS=str(args.omniglot_tasks), MG_BENCH_DEVICE=args.device)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    wanted = (args.workloads.split(",") if args.workloads else
              [k for k in ORDER if not (gpu and k.endswith(THREADED))])
    args.workloads = ",".join(wanted)  # run_torch runs the base names of these
    unknown = [w for w in wanted if w not in ORDER]
    if unknown:
        sys.exit(f"unknown workloads {unknown}; known: {','.join(ORDER)}")
    # Only the wanted rows run (the batched Omniglot rows alone take minutes on the CPU).
    filt = "^(" + "|".join(bench_name(w) for w in wanted) + ")/"

    # 1. Same computation: export from metagrad, check in PyTorch.
    check_lines = []
    with tempfile.TemporaryDirectory() as d:
        exported = run_metagrad(exe, dict(env, MG_BENCH_EXPORT=d), 0.01, filt)
        if not exported:
            check_lines.append("- metagrad's export run failed (see stderr)")
        for k, v in exported.items():
            if "error" in v and k in wanted:
                check_lines.append(f"- {k}: metagrad failed: {v['error']}")
        checks = run_torch(py, env, args, ["--data", d, "--check-only"])
        for w in wanted:
            loss_files = [os.path.join(d, n, "loss.txt") for n in (w, base(w))]
            if w != base(w) and all(os.path.exists(p) for p in loss_files):
                lb, ll = (float(open(p).read()) for p in loss_files)
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
    # peak: metagrad's (host RSS growth on cpu, device peak on cuda); tl_peak, tv_peak:
    # PyTorch's device peaks (cuda only).
    mg, tl, tv, peak, tl_peak, tv_peak = {}, {}, {}, {}, {}, {}
    gpu_name, mg_errors, work = None, {}, {}
    for r in range(args.rounds):
        m = run_metagrad(exe, env, args.mg_min_time, filt)
        for k, v in m.items():
            if "error" in v:
                mg_errors[k] = v["error"]
                continue
            mg.setdefault(k, []).append(v["ms"])
            work[k] = v.get("work")
            peak.setdefault(k, []).append(v["peak_device_MB"] if gpu else v["peak_MB"])
        for rec in run_torch(py, env, args, ["--min-time", str(args.torch_min_time)]):
            gpu_name = rec.get("gpu", gpu_name)
            if "ms_median" in rec:
                loop = rec["variant"] == "loop"
                (tl if loop else tv).setdefault(rec["workload"], []).append(rec["ms_median"])
                if "peak_device_MB" in rec:
                    (tl_peak if loop else tv_peak).setdefault(rec["workload"], []).append(
                        rec["peak_device_MB"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(d, k):
        v = [x for x in d.get(k, []) if x is not None]
        return statistics.median(v) if v else None

    def f(x, fmt="{:.2f}"):
        return fmt.format(x) if x is not None else "n/a"

    # On cuda the peak columns are device memory (allocator peaks, weights and tasks included)
    # of all three; on cpu metagrad's RSS growth over the timed loop only.
    peak_head = ("metagrad peak MB |" if not gpu else
                 "metagrad peak dev MB | torch loop peak dev MB | torch vmap peak dev MB |")
    rows = ["| workload | metagrad ms | torch loop ms | torch vmap ms | speedup vs loop | "
            "speedup vs vmap | " + peak_head,
            "|---|---:|---:|---:|---:|---:|" + "---:|" * (3 if gpu else 1)]
    for k in ORDER:
        if k not in wanted:
            continue
        a, b, c = med(mg, k), med(tl, base(k)), med(tv, base(k))
        peaks = [med(peak, k)] + ([med(tl_peak, base(k)), med(tv_peak, base(k))] if gpu else [])
        rows.append(f"| {k} | {f(a)} | {f(b)} | {f(c)} | "
                    f"{f(b / a if a and b else None)}x | {f(c / a if a and c else None)}x | " +
                    " | ".join(f(x, "{:.0f}") for x in peaks) + " |")
    table = "\n".join(rows)
    device = f"cuda ({gpu_name or 'GPU'}, TF32 off)" if gpu else "cpu"
    title = f"Device: {device}; ms per meta-step, medians of {args.rounds} rounds"
    print(title)
    print(table)
    # What the host dispatches per metagrad meta-step (the kernel profiler, tensor/profiler.h)
    # and, on a GPU, what reaches the device (cuda::launch_stats).
    if gpu:
        # host ms: until meta_step returns, before the final wait (bench_meta_step); near the
        # table's ms, the step is host-bound.
        print("\n| workload | kernel dispatches / step | kernels launched / step | "
              "cuBLAS+cuDNN calls / step | host waits / step | host ms / step |")
        print("|---|---:|---:|---:|---:|---:|")
    else:
        print("\n| workload | kernel dispatches / step |")
        print("|---|---:|")
    for k in ORDER:
        if k in wanted and work.get(k) and work[k][0] is not None:
            cols = work[k] if gpu else work[k][:1]
            print(f"| {k} | " + " | ".join(f(x, "{:.2f}" if i == 4 else "{:.0f}")
                                           for i, x in enumerate(cols)) + " |")
    for k, e in mg_errors.items():
        if k in wanted:
            print(f"- {k}: metagrad failed: {e}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(f"Device: {device}; threads: {args.threads}; OMP_WAIT_POLICY {env.get('OMP_WAIT_POLICY', 'unset')}; Omniglot meta-batch {args.omniglot_tasks}; rounds: {args.rounds} (medians of the rounds' "
                     "medians)\n\n" + table + "\n\nSame-computation check:\n\n" +
                     "\n".join(check_lines) + "\n")
    if FAILED or any(k in wanted for k in mg_errors):
        sys.exit(1)


if __name__ == "__main__":
    main()
