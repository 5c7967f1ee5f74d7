"""Width: does a tuned learning rate survive a wider net? Standard parametrization against μP and NTK.

An initialization is a variance per layer; with Adam it decides, together with each layer's learning
rate, whether what was tuned on a small model still holds on a big one. Yang et al. (2022, Tensor
Programs V) show that under the standard parametrization (SP: PyTorch's default init, one lr for
every layer) the best learning rate shrinks as the net widens, and that under μP (init and per-layer
Adam lr scaled by the width multiplier, readout zero-initialized and scaled: initlab.init.parametrization)
it stays put, so it can be tuned on a narrow model and transferred.

``initlab width`` trains an MLP (``depth`` hidden layers of each width) for every width x log2 lr x
parametrization x seed, as cells on the runner (resume, workers, Ray, Ctrl-C), and measures each run's
training loss as the mean of its last 100 steps' losses (:func:`collect`). Its coordinate check
(:func:`coord_rows`, ``mup``'s test of itself) trains a few steps at each width and records the mean
|pre-activation| of every layer: it grows with width under SP and stays flat under μP.
"""
from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from initlab import engine, files
from initlab.experiments import study
from initlab.experiments.protocol import Experiment
from initlab.options import flag

WIDTHS = (64, 256, 1024)
LOG2_LRS = (-13, -12, -11, -10, -9, -8, -7, -6)
PARAMETRIZATIONS = ("sp", "mup", "ntk")
RECORD_EVERY = 100      # the last record point's running loss is then the mean of the last 100 steps


@dataclass
class WidthConfig:
    """Everything a width experiment depends on; written next to its results as ``config.json``."""
    widths: List[int] = field(default_factory=lambda: list(WIDTHS))
    log2_lrs: List[int] = field(default_factory=lambda: list(LOG2_LRS))
    parametrizations: List[str] = field(default_factory=lambda: list(PARAMETRIZATIONS))
    base_width: int = 64             # μP and NTK equal SP at this width
    init: str = "torch_default"      # the init every parametrization starts from (SP: PyTorch's default)
    depth: int = 3                   # hidden layers: 784-w-w-w-10
    activation: str = "relu"
    optimizer: str = "adam"
    batch_size: int = 32
    steps: int = 500                 # one epoch over steps x batch_size training images (a multiple of 100)
    seeds: int = 2
    first_seed: int = 0
    coord_steps: int = 5             # the coordinate check: Adam steps at coord_log2_lr, per width
    coord_log2_lr: int = -8
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    device: str = "auto"
    workers: int = 0                 # training processes; 0 = one per core on the CPU, 1 on a GPU


def spec(name: str, cfg: WidthConfig) -> str:
    """The parametrization spec a cell carries: ``sp``, ``mup:base_width=64``, ``ntk:base_width=64``."""
    return name if name == "sp" else f"{name}:base_width={cfg.base_width}"


def validate(cfg: WidthConfig) -> None:
    """Raise ConfigError (one line) for the first bad setting, before any work."""
    checks = [
        (bool(cfg.widths) and all(1 <= w <= 16384 for w in cfg.widths), f"{flag('widths')} must be in 1..16384"),
        (bool(cfg.log2_lrs) and all(-30 <= k <= 2 for k in cfg.log2_lrs), f"{flag('log2_lrs')} must be in -30..2"),
        (bool(cfg.parametrizations) and all(p in PARAMETRIZATIONS for p in cfg.parametrizations),
         f"{flag('parametrizations')}: choose from {', '.join(PARAMETRIZATIONS)}"),
        (1 <= cfg.base_width <= 16384, f"{flag('base_width')} must be in 1..16384"),
        (1 <= cfg.depth <= 100, f"{flag('depth')} must be in 1..100"),
        (cfg.steps >= RECORD_EVERY and cfg.steps % RECORD_EVERY == 0,
         f"{flag('steps')} must be a multiple of {RECORD_EVERY} (the training loss is the mean of the last "
         f"{RECORD_EVERY} steps)"),
        (0 <= cfg.coord_steps <= 100 and -30 <= cfg.coord_log2_lr <= 2,
         f"{flag('coord_steps')} must be in 0..100 and {flag('coord_log2_lr')} in -30..2"),
    ]
    for ok, message in checks:
        if not ok:
            raise study.ConfigError(message)
    for group in plan(cfg):
        study.validate(group)


def _study(cfg: WidthConfig, width: int, log2_lr: int, name: str, record: bool = True) -> study.StudyConfig:
    return study.StudyConfig(
        inits=[cfg.init], seeds=cfg.seeds, first_seed=cfg.first_seed, model="mlp", width=width, depth=cfg.depth,
        activation=cfg.activation, parametrization=spec(name, cfg), dataset=cfg.dataset, data_dir=cfg.data_dir,
        device=cfg.device, workers=cfg.workers,
        train=engine.TrainConfig(epochs=1, lr=2.0 ** log2_lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                                 train_size=cfg.steps * cfg.batch_size, record=record,
                                 record_every=RECORD_EVERY, hist_moments=2))


def plan(cfg: WidthConfig) -> List[study.StudyConfig]:
    """One study (the seeds of one run) per parametrization x width x lr, widest first: the costly
    stacks start while the cheap ones fill the gaps."""
    return [_study(cfg, w, k, p) for w in sorted(cfg.widths, reverse=True) for p in cfg.parametrizations
            for k in cfg.log2_lrs]


def collect(config: dict, runs: List[dict]) -> Dict[str, List[dict]]:
    """runs.csv: one row per finished run -- width, lr, log2_lr, parametrization, seed, train_loss (the
    mean of its last 100 steps' losses: the running loss of its last record point), test_acc, diverged."""
    rows = []
    for run in runs:
        r, c = run["row"], run["config"]
        curve = sorted(run["tables"].get("curves", []), key=lambda x: x["step"])
        last = curve[-1] if curve else {}
        lr = c["train"]["lr"]
        loss = last.get("train_loss")
        rows.append({"width": c["width"], "lr": lr, "log2_lr": round(math.log2(lr)),
                     "parametrization": c.get("parametrization", "sp").split(":")[0], "seed": r["seed"],
                     "train_loss": math.nan if r["diverged"] or loss is None else loss,
                     "test_acc": r["test_acc"], "diverged": r["diverged"], "steps": r["steps"],
                     "train_seconds": r["train_seconds"]})
    rows.sort(key=lambda x: (x["parametrization"], x["width"], x["log2_lr"], x["seed"]))
    return {"runs": rows}


# --------------------------------------------------------------------------------------------------
# The best learning rate per width, and its shift
# --------------------------------------------------------------------------------------------------

def loss_table(rows: Sequence[dict]) -> Dict[Tuple[str, int, int], List[float]]:
    """{(parametrization, width, log2 lr): training losses over seeds} (a diverged run: inf)."""
    out: Dict[Tuple[str, int, int], List[float]] = {}
    for r in rows:
        loss = r["train_loss"]
        out.setdefault((r["parametrization"], r["width"], r["log2_lr"]), []).append(
            loss if loss is not None and math.isfinite(loss) else math.inf)
    return out


def best_lrs(rows: Sequence[dict]) -> Dict[Tuple[str, int], dict]:
    """{(parametrization, width): {"log2_lr": the lr of the least mean training loss, "loss", "spread":
    the log2 lrs whose mean is within one seed std (of the best) of it}}."""
    table = loss_table(rows)
    out = {}
    for p, w in sorted({(p, w) for p, w, _ in table}):
        means = {k: statistics.fmean(v) for (p2, w2, k), v in table.items() if (p2, w2) == (p, w)}
        finite = {k: m for k, m in means.items() if math.isfinite(m)}
        if not finite:
            continue
        k = min(finite, key=finite.get)
        seeds = table[(p, w, k)]
        std = statistics.stdev(seeds) if len(seeds) > 1 else 0.0
        out[(p, w)] = {"log2_lr": k, "loss": finite[k], "std": std,
                       "spread": sorted(j for j, m in finite.items() if m <= finite[k] + std)}
    return out


def shifts(rows: Sequence[dict]) -> Dict[str, dict]:
    """{parametrization: {"factor": 2^(max - min) of the best log2 lr over the widths, "widths", "best"}}."""
    best = best_lrs(rows)
    out = {}
    for p in sorted({p for p, _ in best}):
        ks = {w: b["log2_lr"] for (p2, w), b in best.items() if p2 == p}
        if ks:
            out[p] = {"factor": 2.0 ** (max(ks.values()) - min(ks.values())), "best": ks}
    return out


# --------------------------------------------------------------------------------------------------
# The coordinate check (no runner: a few steps per width)
# --------------------------------------------------------------------------------------------------

def coord_rows(cfg: WidthConfig, dataset) -> List[dict]:
    """coord.csv: per parametrization x width x seed x step (0, 1 and coord_steps), the mean
    |pre-activation| of every Linear layer (fc1 .. output) on 256 test images after that many Adam steps
    at lr 2^coord_log2_lr (each step count trained afresh from the same seed, by the engine)."""
    if cfg.coord_steps <= 0:
        return []
    device = study.resolve_device(cfg.device)
    rows = []
    for p in cfg.parametrizations:
        for w in cfg.widths:
            for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
                for t in sorted({0, 1, cfg.coord_steps}):
                    c = _study(cfg, w, cfg.coord_log2_lr, p, record=False)
                    c.train.train_size = None
                    td = engine.prepare(dataset.train_images[:max(t, 1) * cfg.batch_size],
                                        dataset.train_labels[:max(t, 1) * cfg.batch_size],
                                        dataset.test_images[:256], dataset.test_labels[:256], c.train,
                                        device, mean=dataset.mean, std=dataset.std)
                    model, _ = study.build_and_initialize(c, cfg.init, seed, td.x_train)
                    if t:
                        engine.train_stack([[model]], [seed], td, c.train)
                    rows += [{"parametrization": p, "width": w, "seed": seed, "step": t, "layer": name,
                              "mean_abs": size} for name, size in _layer_sizes(model, td.x_test).items()]
    return rows


def _layer_sizes(model, x) -> Dict[str, float]:
    """{Linear layer: mean |its output|} (with its forward multiplier), as mup's coord_check records."""
    sizes: Dict[str, float] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(
                lambda mod, inputs, out, name=name: sizes.__setitem__(name, out.abs().mean().item())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sizes



def prepare(cfg: WidthConfig, out: Path, dataset, resume: bool = False, progress: bool = True) -> None:
    """coord.csv: the coordinate check (no runner: a few steps per width), before the runs; a resume
    keeps the one there."""
    if resume and (Path(out) / "coord.csv").exists():
        return
    if progress:
        print("coordinate check ...", file=sys.stderr, flush=True)
    files.atomic_write_text(Path(out) / "coord.csv", files.rows_to_csv(coord_rows(cfg, dataset)))


EXPERIMENT = Experiment(
    "width", config=WidthConfig, plan=plan, collect=collect, prepare=prepare, validate=validate,
    small={"widths": [16, 32], "log2_lrs": [-9, -7], "parametrizations": ["sp", "mup"], "steps": 100,
           "seeds": 2, "coord_steps": 1},
    help="μP width transfer: training loss against lr at several widths under SP, μP and NTK, and a "
         "coordinate check (Tensor Programs V); resumable",
    description="Train an MLP at every width x lr x parametrization x seed and report where each width's "
                "best learning rate lies: under the standard parametrization it moves as the net widens, "
                "under μP it stays put.")
