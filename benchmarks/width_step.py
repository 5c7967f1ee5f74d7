"""The width experiment's training step: the engine's stack against a plain one-model loop and a plain
``bmm`` stack, side by side, with each one's fraction of this machine's matrix-product rate.

    python benchmarks/width_step.py [--width 1024] [--models 8] [--steps 30] [--repeats 3] [--threads 2]
    python benchmarks/width_step.py --profile      # where the engine's step spends its time (torch.profiler)

MLP 784-w-w-w-10 (ReLU), Adam, batch 32, MNIST. Four measurements, interleaved round by round (median of
``--repeats``):

- ``matmul``: a 2048 x 2048 matrix product (the machine's rate, GFLOP/s);
- ``plain loop``: one ``nn.Sequential`` model, ``torch.optim.Adam(fused=True)``, one model at a time;
- ``plain bmm``: ``--models`` models as stacked weights, forward with ``torch.baddbmm``, autograd, fused Adam;
- ``engine``: ``engine.train_stack`` on the same ``--models`` models (recording off).

A step's useful work is 6 x batch x parameters FLOP (forward 2, backward 4); each line prints ms per
model-step and that work as a fraction of the matrix-product rate.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from initlab import data, engine, init, models
from initlab.engine import training


def matmul_rate(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def _batches(ds, steps: int):
    x = engine.to_float_images(ds.train_images[:steps * 32], False, "cpu").reshape(steps, 32, -1)
    return x, ds.train_labels[:steps * 32].reshape(steps, 32)


def plain_loop(ds, width: int, steps: int) -> float:
    m = torch.nn.Sequential(torch.nn.Linear(784, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                            torch.nn.ReLU(), torch.nn.Linear(width, width), torch.nn.ReLU(),
                            torch.nn.Linear(width, 10))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
    x, y = _batches(ds, steps)
    t0 = time.perf_counter()
    for k in range(steps):
        loss = torch.nn.functional.cross_entropy(m(x[k]), y[k])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def plain_bmm(ds, width: int, n_models: int, steps: int) -> float:
    sizes = [(784, width), (width, width), (width, width), (width, 10)]
    ws = [(torch.randn(n_models, i, o) / i ** 0.5).requires_grad_() for i, o in sizes]
    bs = [torch.zeros(n_models, 1, o, requires_grad=True) for _, o in sizes]
    opt = torch.optim.Adam(ws + bs, lr=1e-3, fused=True)
    x, y = _batches(ds, steps)
    t0 = time.perf_counter()
    for k in range(steps):
        h = x[k].expand(n_models, -1, -1)                                    # (M, B, 784)
        for j, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b, h, w)
            if j < len(ws) - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h.reshape(-1, 10), y[k].repeat(n_models), reduction="sum") / 32
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps / n_models


def engine_stack(ds, width: int, n_models: int, steps: int) -> float:
    cfg = engine.TrainConfig(lr=1e-3, optimizer="adam", train_size=steps * 32, record=False)
    td = training.prepare(ds.train_images, ds.train_labels, ds.test_images[:256], ds.test_labels[:256], cfg)
    stack = []
    for k in range(n_models):
        m = models.build("mlp", width=width, depth=3)
        init.initialize(m, "torch_default", generator=torch.Generator().manual_seed(k))
        stack.append(m)
    result = training.train_stack([stack], [0], td, cfg)
    return result.wall_seconds / result.steps / n_models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--models", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="profile one engine run instead (top operators)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ds = data.load_dataset("mnist", quiet=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine_stack(ds, args.width, args.models, args.steps)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
        return
    params = 784 * args.width + 2 * args.width ** 2 + 10 * args.width + 3 * args.width + 10
    flop = 6 * 32 * params
    times = {"matmul": [], "plain loop": [], "plain bmm": [], "engine": []}
    for _ in range(args.repeats):
        times["matmul"].append(matmul_rate())
        times["plain loop"].append(plain_loop(ds, args.width, args.steps))
        times["plain bmm"].append(plain_bmm(ds, args.width, args.models, args.steps))
        times["engine"].append(engine_stack(ds, args.width, args.models, args.steps))
    rate = statistics.median(times.pop("matmul"))
    print(f"mlp 784-{args.width}x3-10, Adam, batch 32, {args.models} models per stack, {args.steps} steps, "
          f"{args.threads} threads, torch {torch.__version__}, median of {args.repeats} interleaved rounds")
    print(f"  matmul 2048^2: {rate:.1f} GFLOP/s")
    engine_ms = 1000 * statistics.median(times["engine"])
    for name, ts in times.items():
        ms = 1000 * statistics.median(ts)
        print(f"  {name:11s} {ms:7.2f} ms / model-step ({1000 * min(ts):.2f}-{1000 * max(ts):.2f}), "
              f"{flop / (ms / 1000) / 1e9:5.1f} GFLOP/s = {flop / (ms / 1000) / 1e9 / rate:.0%} of matmul, "
              f"engine is {ms / engine_ms:.2f}x as fast")


if __name__ == "__main__":
    main()
