"""Which stack layouts give a model the same bits, and how far apart the others end.

    python benchmarks/layout_spread.py [--model lenet5] [--init kaiming] [--seed 0] [--train-size 60000]

Trains the same model (one init, one seed, the same data order) in several stacks -- alone, first or
later among other inits, beside other seeds -- on one torch thread, then prints for each layout its
position in the stack, the final test accuracy and loss, and which layouts ended with bit-identical
weights; last, the spread (max - min and std) of the test accuracy over the layouts.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from initlab import data, engine, init, models
from initlab.engine import training

OTHERS = ["xavier", "zeros", "normal", "uniform"]


def layouts(target: str, seed: int):
    """name -> (stack layout [(seed, [inits])], position of the target in it)."""
    return {
        "alone": ([(seed, [target])], 0),
        "first of 2 inits": ([(seed, [target, "xavier"])], 0),
        "first of 5 inits": ([(seed, [target] + OTHERS)], 0),
        "first of 2 seeds": ([(seed, [target]), (seed + 1, [target])], 0),
        "2nd of 2 inits": ([(seed, ["xavier", target])], 1),
        "2nd of 3 inits": ([(seed, ["xavier", target, "zeros"])], 1),
        "2nd seed of 2": ([(seed + 1, [target]), (seed, [target])], 1),
        "3rd of 5 inits": ([(seed, OTHERS[:2] + [target] + OTHERS[2:])], 2),
        "5th of 5 inits": ([(seed, OTHERS + [target])], 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet5")
    p.add_argument("--init", default="kaiming")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=60000)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = data.load_dataset("mnist", quiet=True)
    cfg = engine.TrainConfig(train_size=args.train_size, record=False)
    td = training.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, cfg)
    results = {}
    for name, (layout, position) in layouts(args.init, args.seed).items():
        stack = []
        for seed, inits in layout:
            row = []
            for spec in inits:
                m = models.build(args.model)
                init.initialize(m, spec, generator=torch.Generator().manual_seed(seed))
                row.append(m)
            stack.append(row)
        res = training.train_stack(stack, [seed for seed, _ in layout], td, cfg)
        s, i = divmod(position, len(layout[0][1]))
        weights = torch.cat([p.detach().flatten() for p in stack[s][i].parameters()])
        results[name] = (position, float(res.test_acc[s, i]), float(res.test_loss[s, i]), weights)
        print(f"{name:18s} position {position}: test acc {100 * results[name][1]:.2f} %, "
              f"loss {results[name][2]:.4f}", flush=True)
    groups = []
    for name, (_, _, _, w) in results.items():
        for g in groups:
            if torch.equal(results[g[0]][3], w):
                g.append(name)
                break
        else:
            groups.append([name])
    print("\nbit-identical weights:")
    for g in groups:
        print("  " + ", ".join(g))
    accs = [100 * r[1] for r in results.values()]
    print(f"\n{args.model} {args.init} seed {args.seed}, {args.train_size} images, 1 thread: test accuracy over "
          f"{len(accs)} layouts {min(accs):.2f}-{max(accs):.2f} % (max - min {max(accs) - min(accs):.2f} points, "
          f"std {statistics.stdev(accs):.3f})")


if __name__ == "__main__":
    main()
