#!/usr/bin/env python3
"""PyTorch versions of bench/bench_meta_step.cpp's workloads: one MAML meta-step (inner
step, query loss, meta-backward, Adam 1e-3), functional style, in two forms:

  loop: a per-task Python loop with torch.autograd.grad (create_graph=True for second
        order), each task's query loss backpropagated as it comes (as metagrad's MAML does);
  vmap: the tasks batched with vmap over an inner grad (torch.func, or functorch on
        torch 1.13); skipped with a message when neither is available.

Batch norm uses batch statistics (F.batch_norm, training=True, no running stats).

With --data DIR (written by the C++ benchmark with MG_BENCH_EXPORT=DIR) the initial weights
and tasks are loaded from DIR/<workload>/, and the first step's loss and updated weights are
compared with metagrad's. Prints one JSON object per (workload, variant) on stdout.

--device cuda: weights and tasks (made or loaded on the CPU as above) move to the GPU, each
timed step ends with torch.cuda.synchronize(), peak_device_MB is torch.cuda.max_memory_allocated
over the timed steps, and TF32 is off in matrix products and cuDNN convolutions (exact float32,
metagrad's default; PyTorch's cuDNN default is TF32).
"""
import argparse
import glob
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

try:
    from torch.func import grad as f_grad, vmap as f_vmap
    VMAP_SOURCE = "torch.func"
except ImportError:
    try:
        from functorch import grad as f_grad, vmap as f_vmap
        VMAP_SOURCE = "functorch"
    except ImportError:
        f_grad = f_vmap = None
        VMAP_SOURCE = None

WORKLOADS = ["sinusoid_so", "sinusoid_fo", "omniglot_maxpool_so", "omniglot_maxpool_fo",
             "omniglot_strided_so", "omniglot_strided_fo"]


def sinusoid_forward(p, x):
    h = F.relu(F.linear(x, p["0.weight"], p["0.bias"]))
    h = F.relu(F.linear(h, p["2.weight"], p["2.bias"]))
    return F.linear(h, p["head.weight"], p["head.bias"])


def conv4_forward(strided):
    def fwd(p, x):
        h = x
        for b in range(4):
            k = f"block{b}."
            h = F.conv2d(h, p[k + "conv.weight"], p[k + "conv.bias"], stride=2 if strided else 1,
                         padding=1)
            h = F.batch_norm(h, None, None, p[k + "bn.weight"], p[k + "bn.bias"], training=True,
                             eps=1e-5)
            h = F.relu(h)
            if not strided:
                h = F.max_pool2d(h, 2)
        h = h.mean(dim=(2, 3)) if strided else h.flatten(1)
        return F.linear(h, p["head.weight"], p["head.bias"])
    return fwd


def init_params(name, gen):
    """PyTorch-default-like initial weights (used without --data)."""
    def lin(i, o):
        b = 1 / math.sqrt(i)
        return [torch.empty(o, i).uniform_(-b, b, generator=gen), torch.empty(o).uniform_(-b, b, generator=gen)]
    p = {}
    if name.startswith("sinusoid"):
        for k, (i, o) in {"0": (1, 40), "2": (40, 40), "head": (40, 1)}.items():
            p[k + ".weight"], p[k + ".bias"] = lin(i, o)
    else:
        strided = "strided" in name
        for b in range(4):
            cin = 1 if b == 0 else 64
            bound = 1 / math.sqrt(cin * 9)
            p[f"block{b}.conv.weight"] = torch.empty(64, cin, 3, 3).uniform_(-bound, bound, generator=gen)
            p[f"block{b}.conv.bias"] = torch.empty(64).uniform_(-bound, bound, generator=gen)
            p[f"block{b}.bn.weight"] = torch.ones(64)
            p[f"block{b}.bn.bias"] = torch.zeros(64)
        feat = 64 if strided else 64
        p["head.weight"], p["head.bias"] = lin(feat, 5)
    return p


def make_tasks(name, gen):
    tasks = []
    if name.startswith("sinusoid"):
        for _ in range(25):
            a = float(torch.empty(()).uniform_(0.1, 5.0, generator=gen))
            ph = float(torch.empty(()).uniform_(0, math.pi, generator=gen))
            xs = torch.empty(10, 1).uniform_(-5, 5, generator=gen)
            xq = torch.empty(10, 1).uniform_(-5, 5, generator=gen)
            tasks.append((xs, a * torch.sin(xs - ph), xq, a * torch.sin(xq - ph)))
    else:
        ys = torch.arange(5)
        yq = torch.arange(5).repeat_interleave(15)
        for _ in range(32):
            tasks.append((torch.randn(5, 1, 28, 28, generator=gen), ys,
                          torch.randn(75, 1, 28, 28, generator=gen), yq))
    return tasks


def load(name, data_dir):
    d = os.path.join(data_dir, name)
    p = {}
    for f in sorted(glob.glob(os.path.join(d, "param.*.npy"))):
        p[os.path.basename(f)[len("param."):-len(".npy")]] = torch.from_numpy(np.load(f))
    tasks = []
    i = 0
    while os.path.exists(os.path.join(d, f"task{i}.sx.npy")):
        tasks.append(tuple(torch.from_numpy(np.load(os.path.join(d, f"task{i}.{k}.npy")))
                           for k in ("sx", "sy", "qx", "qy")))
        i += 1
    with open(os.path.join(d, "loss.txt")) as fh:
        ref_loss = float(fh.read())
    after = {k: torch.from_numpy(np.load(os.path.join(d, f"after.{k}.npy"))) for k in p}
    return p, tasks, ref_loss, after


def exact_float32_on_gpu():
    """TF32 off in cuBLAS and cuDNN. PyTorch 2.9+ has per-backend fp32_precision flags and
    raises on a mix of those and the legacy allow_tf32 ones, so only one kind is set."""
    cudnn = torch.backends.cudnn
    try:
        # (torch 1.13's cuda.matmul raises AssertionError on unknown names: not asked first.)
        conv, rnn = getattr(cudnn, "conv", None), getattr(cudnn, "rnn", None)
        if conv is not None and rnn is not None and hasattr(conv, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            cudnn.conv.fp32_precision = "ieee"
            cudnn.rnn.fp32_precision = "ieee"  # as conv: a query for cuDNN as a whole agrees
        else:
            torch.backends.cuda.matmul.allow_tf32 = False
            cudnn.allow_tf32 = False
    except Exception as e:  # noqa: BLE001 (timings still useful; say so)
        print(f"# could not turn TF32 off: {type(e).__name__}: {e}", file=sys.stderr)


class Setup:
    def __init__(self, name, p0, tasks, device="cpu"):
        self.name = name
        self.fwd = sinusoid_forward if name.startswith("sinusoid") else conv4_forward("strided" in name)
        self.loss = F.mse_loss if name.startswith("sinusoid") else F.cross_entropy
        self.lr = 0.01 if name.startswith("sinusoid") else 0.4
        self.second_order = name.endswith("_so")
        self.tasks = [tuple(x.to(device) for x in t) for t in tasks]
        self.names = list(p0.keys())
        self.params = {k: v.clone().float().to(device).requires_grad_(True) for k, v in p0.items()}
        self.opt = torch.optim.Adam(self.params.values(), lr=1e-3)
        self.stacked = None  # made by the first vmap step, so the loop's memory is its own

    def step_loop(self):
        self.opt.zero_grad()
        n = len(self.tasks)
        total = 0.0
        for sx, sy, qx, qy in self.tasks:
            ws = [self.params[k] for k in self.names]
            l = self.loss(self.fwd(self.params, sx), sy)
            gs = torch.autograd.grad(l, ws, create_graph=self.second_order)
            fast = {k: w - self.lr * g for k, w, g in zip(self.names, ws, gs)}
            lq = self.loss(self.fwd(fast, qx), qy)
            (lq / n).backward()
            total += lq.item() / n
        self.opt.step()
        return total

    def step_vmap(self):
        self.opt.zero_grad()
        second = self.second_order
        if self.stacked is None:
            self.stacked = [torch.stack([t[i] for t in self.tasks]) for i in range(4)]

        def task_loss(p, sx, sy, qx, qy):
            g = f_grad(lambda q: self.loss(self.fwd(q, sx), sy))(p)
            if not second:
                g = {k: v.detach() for k, v in g.items()}
            fast = {k: p[k] - self.lr * g[k] for k in p}
            return self.loss(self.fwd(fast, qx), qy)

        losses = f_vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(self.params, *self.stacked)
        l = losses.mean()
        l.backward()
        self.opt.step()
        return l.item()


def bench(fn, min_time, min_iters=3, sync=lambda: None, before=lambda: None):
    """sync() ends each timed step (waits for the GPU); before() runs once after the warm-up."""
    fn()  # warm-up, untimed
    sync()
    before()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < min_iters or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", help="directory written by bench_meta_step with MG_BENCH_EXPORT")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--variants", default="loop,vmap")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per (workload, variant)")
    ap.add_argument("--omniglot-tasks", type=int, default=32,
                    help="Omniglot meta-batch (fewer for quick runs; the first N exported tasks)")
    ap.add_argument("--check-only", action="store_true", help="only the first-step check")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # the CPU's; on cuda only host-side work uses them
    gpu = args.device == "cuda"
    if gpu:
        if not torch.cuda.is_available():
            sys.exit("--device cuda: torch.cuda.is_available() is False")
        exact_float32_on_gpu()
    variants = args.variants.split(",")
    if "vmap" in variants and f_vmap is None:
        print("# vmap variant skipped: neither torch.func nor functorch is available", file=sys.stderr)
        variants.remove("vmap")
    for name in args.workloads.split(","):
        if args.data:
            if not os.path.exists(os.path.join(args.data, name, "loss.txt")):
                for v in variants:  # metagrad's side of this workload failed before its step
                    print(json.dumps({"workload": name, "variant": v, "error":
                                      "no metagrad export (its benchmark failed)"}), flush=True)
                continue
            p0, tasks, ref_loss, after = load(name, args.data)
        else:
            gen = torch.Generator().manual_seed(0)
            p0, tasks, ref_loss, after = init_params(name, gen), make_tasks(name, gen), None, None
        if name.startswith("omniglot"):
            tasks = tasks[:args.omniglot_tasks]
        for v in variants:
            s = None  # the previous variant's weights and tasks go before the next's come
            s = Setup(name, p0, tasks, args.device)
            step = s.step_loop if v == "loop" else s.step_vmap
            rec = {"workload": name, "variant": v, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "device": args.device}
            if gpu:
                rec["gpu"] = torch.cuda.get_device_name()
            try:
                first = step()
            except Exception as e:  # a missing vmap batching rule, say
                rec["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
                print(json.dumps(rec), flush=True)
                continue
            rec["first_loss"] = first
            if not math.isfinite(first):
                rec["error"] = "non-finite loss"
            if ref_loss is not None:
                rec["metagrad_first_loss"] = ref_loss
                rec["loss_rel_diff"] = abs(first - ref_loss) / max(abs(ref_loss), 1e-12)
                # Conv biases feed batch norm, which cancels them: their exact gradient is 0,
                # so each side's roundoff sign decides Adam's first +-lr move. Left out.
                rec["max_weight_diff_after_step"] = max(
                    float((s.params[k].detach().cpu() - after[k]).abs().max()) for k in after
                    if not k.endswith("conv.bias"))
            if not args.check_only:
                if gpu:
                    times = bench(step, args.min_time, sync=torch.cuda.synchronize,
                                  before=torch.cuda.reset_peak_memory_stats)
                    rec["peak_device_MB"] = torch.cuda.max_memory_allocated() / 2**20
                else:
                    times = bench(step, args.min_time)
                rec["ms_median"] = statistics.median(times)
                rec["iters"] = len(times)
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
