"""A coordinate check (``mup``'s test of itself, Yang et al. 2022): how big the last hidden layer's
activations are after a few Adam steps, at growing widths, under each width parametrization.

    python benchmarks/coord_check.py [--widths 64 256 1024] [--steps 5] [--lr 0.00390625] [--seeds 3]

mlp:depth=3 (tanh, kaiming init) trained by the engine on MNIST's first ``steps`` x 32 images, one seed
per run; prints the mean |fc3 pre-activation| (the Linear layer's output, what mup's coord_check
records) on 256 test images, mean ± std over ``--seeds``. Under μP it stays put as width grows; under
SP it grows (Adam moves every hidden weight by ~lr, so a hidden unit's input moves by ~width x lr).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from initlab import data, engine
from initlab.experiments import study

SPECS = ("sp", "mup:base_width=64", "ntk:base_width=64")


def fc3_size(ds, spec: str, width: int, steps: int, lr: float, seed: int) -> float:
    n = steps * 32
    cfg = study.StudyConfig(inits=["kaiming"], model=f"mlp:width={width},depth=3", activation="tanh",
                            parametrization=spec, train=engine.TrainConfig(lr=lr, record=False))
    td = engine.prepare(ds.train_images[:n], ds.train_labels[:n], ds.test_images[:256], ds.test_labels[:256],
                        cfg.train)
    model, _ = study.build_and_initialize(cfg, "kaiming", seed)
    engine.train_stack([[model]], [seed], td, cfg.train)
    with torch.no_grad():
        h2 = model(td.x_test, return_activations=True)[1]["fc2"]             # (256, width)
        return model.fc3(h2 * model.multipliers.get("fc3", 1.0)).abs().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=2**-8)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = data.load_dataset("mnist", quiet=True)
    print(f"mean |fc3 pre-activation| after {args.steps} Adam steps at lr {args.lr:g}, "
          f"{args.seeds} seeds (mean ± std), torch {torch.__version__}")
    print("parametrization".ljust(20) + "".join(f"width {w}".rjust(16) for w in args.widths))
    for spec in SPECS:
        cells = []
        for w in args.widths:
            v = [fc3_size(ds, spec, w, args.steps, args.lr, s) for s in range(args.seeds)]
            cells.append(f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}")
        print(spec.ljust(20) + "".join(c.rjust(16) for c in cells))


if __name__ == "__main__":
    main()
