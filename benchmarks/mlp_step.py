"""A deep plain net's training step, batched matrix products against vmap, side by side.

    python benchmarks/mlp_step.py [--depth 30] [--width 256] [--models 2] [--steps 100] [--repeats 3]

Trains a stack of ``--models`` mlps (one seed) for ``--steps`` steps of SGD on MNIST, recording off, on
one torch thread, alternating the engine's two paths for fully connected nets: ``linear_chain`` (one
``baddbmm`` per layer over the stacked weights) and the general ``vmap`` path. Prints the median
milliseconds per step per model of each, their range, and the ratio.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from initlab import data, engine, init, models
from initlab.engine import linear_chain, training


def one_run(ds, depth: int, width: int, n_models: int, steps: int, chain: bool) -> float:
    cfg = engine.TrainConfig(lr=3e-3, optimizer="sgd", train_size=steps * 32, record=False)
    td = training.prepare(ds.train_images, ds.train_labels, ds.test_images[:256], ds.test_labels[:256], cfg)
    stack = []
    for k in range(n_models):
        m = models.build("mlp", width=width, depth=depth)
        init.initialize(m, "kaiming", generator=torch.Generator().manual_seed(k))
        stack.append(m)
    original = linear_chain.chain_of
    if not chain:
        linear_chain.chain_of = lambda model: None
    try:
        result = training.train_stack([stack], [0], td, cfg)
    finally:
        linear_chain.chain_of = original
    return 1000 * result.wall_seconds / result.steps / n_models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--models", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = data.load_dataset("mnist", quiet=True)
    times = {"linear_chain": [], "vmap": []}
    for _ in range(args.repeats):
        for name in times:
            times[name].append(one_run(ds, args.depth, args.width, args.models, args.steps, name == "linear_chain"))
    print(f"mlp depth {args.depth}, width {args.width}, {args.models} models, {args.steps} steps, 1 thread, "
          f"median of {args.repeats}:")
    for name, ts in times.items():
        print(f"  {name:12s} {statistics.median(ts):6.1f} ms / step / model  (range {min(ts):.1f}-{max(ts):.1f})")
    print(f"  vmap / linear_chain: {statistics.median(times['vmap']) / statistics.median(times['linear_chain']):.2f}x")


if __name__ == "__main__":
    main()
