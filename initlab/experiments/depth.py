"""Deep plain nets: where initialization decides whether a network trains at all.

He, Zhang, Ren & Sun (2015, Fig. 3): a 30-layer plain ReLU net converges with their init (Var(w) =
2/fan_in) and stalls with Xavier's (Var(w) = 1/fan_avg), whose ReLU signal halves its variance at every
layer. ``initlab depth`` trains plain nets (``mlp``: ``depth`` hidden layers of ``width`` units, no
normalization, no skip connections; ``--conv`` for 3x3 conv stacks) at several depths, under several
inits and learning rates, one epoch of SGD with Nesterov momentum 0.9 by default (as the paper trains;
``--optimizer adam`` measures how much Adam's per-weight step sizes rescue a bad scale), and probes the
deepest net's signal at initialization with :mod:`initlab.experiments.probe`.

Each (depth, lr) is one study (every init x seed as one batched stack, every init of a seed on the same
data order), planned as cells on the runner (``initlab.runs.runner``: resume, workers, Ray, Ctrl-C); only
the deepest depth records curves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from initlab import engine, files, models
from initlab.experiments import probe, study
from initlab.experiments.limits import check_seeds
from initlab.experiments.protocol import Experiment
from initlab.options import UsageError, flag

DEPTHS = (5, 10, 20, 30)      # He et al.'s contrast shows at 30 layers; defaults run in ~7 min on 2 cores
DEPTH_INITS = ("xavier", "kaiming", "normal", "orthogonal", "lsuv")
LRS = (3e-3, 1e-2)           # the range where the paper's contrast shows on MNIST at batch 32


@dataclass
class DepthConfig:
    """Everything a depth experiment depends on; written next to its results as ``config.json``."""
    depths: List[int] = field(default_factory=lambda: list(DEPTHS))
    inits: List[str] = field(default_factory=lambda: list(DEPTH_INITS))
    lrs: List[float] = field(default_factory=lambda: list(LRS))
    seeds: int = 2
    first_seed: int = 0
    width: int = 256                # units per hidden layer (channels with conv)
    conv: bool = False              # 3x3 convolutions, padding 1, instead of fully connected layers
    model: str = "mlp"              # the plain net, optionally with settings: 'mlp:width=128,conv=true'
    activation: str = "relu"
    optimizer: str = "sgd"          # sgd (Nesterov momentum 0.9, as He et al. train) | adam | adamw
    batch_size: int = 32
    epochs: int = 1
    train_size: Optional[int] = 20000  # the first N training images of a seeded shuffle (None: all 60,000)
    bias_init: Union[float, str] = 0.0   # a constant every bias starts at, or a distribution it is drawn from
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    device: str = "auto"
    workers: int = 0                # training processes; 0 = one per core on the CPU, 1 on a GPU

    @property
    def deepest(self) -> int:
        return max(self.depths)


def resolve(cfg: DepthConfig) -> DepthConfig:
    """``cfg`` with the settings of ``--model mlp:key=value`` moved into ``width`` and ``conv``; a
    ValueError (one line) for another model, a ``depth=`` (``--depths`` sets it) or a setting given
    both ways with different values."""
    name, options = models.parse_model(cfg.model)
    if name != "mlp":
        raise ValueError(f"depth trains the mlp (a plain net); got {flag('model', name)}")
    if "depth" in options:
        raise ValueError(f"{flag('depths')} sets the depth: drop depth= from {flag('model')}")
    base = DepthConfig()
    for key in ("width", "conv"):
        given = getattr(cfg, key)
        if key in options and given != getattr(base, key) and given != options[key]:
            raise ValueError(f"{key} given twice: {options[key]} in {flag('model')}, {given} by {flag(key)}")
    return replace(cfg, model="mlp", **options)


def study_config(cfg: DepthConfig, depth: int, lr: float) -> study.StudyConfig:
    """The study that trains every init x seed at one depth and learning rate."""
    return study.StudyConfig(
        inits=list(cfg.inits), seeds=cfg.seeds, first_seed=cfg.first_seed, model="mlp",
        activation=cfg.activation, width=cfg.width, depth=depth, conv=cfg.conv,
        bias_init=cfg.bias_init, dataset=cfg.dataset, data_dir=cfg.data_dir, device=cfg.device,
        workers=cfg.workers,
        train=engine.TrainConfig(epochs=cfg.epochs, lr=lr, batch_size=cfg.batch_size,
                                 optimizer=cfg.optimizer, train_size=cfg.train_size,
                                 record=depth == cfg.deepest))


def probe_config(cfg: DepthConfig) -> probe.ProbeConfig:
    """The signal probe of the deepest net at initialization (no training)."""
    return probe.ProbeConfig(inits=list(cfg.inits), activations=[cfg.activation], width=cfg.width,
                             depth=cfg.deepest, conv=cfg.conv, seeds=cfg.seeds,
                             first_seed=cfg.first_seed, bias_init=cfg.bias_init, dataset=cfg.dataset,
                             data_dir=cfg.data_dir)


def validate(cfg: DepthConfig) -> None:
    """Raise UsageError (one line) for the first bad setting, before any training."""
    try:
        cfg = resolve(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not cfg.depths or any(d < 1 for d in cfg.depths):
        raise UsageError(f"{flag('depths')} must be >= 1, got {' '.join(map(str, cfg.depths)) or 'none'}")
    if not cfg.lrs or any(not (math.isfinite(lr) and lr > 0) for lr in cfg.lrs):
        raise UsageError(f"{flag('lrs')} must be > 0, got {' '.join(map(str, cfg.lrs)) or 'none'}")
    if cfg.activation not in probe.activation_names():
        raise UsageError(f"unknown activation {cfg.activation!r}; choose from: "
                         f"{', '.join(probe.activation_names())}")
    studies = len(cfg.depths) * len(cfg.lrs)          # each trains every init x seed; the probe adds one
    check_seeds(cfg.seeds, cfg.first_seed, len(cfg.inits) * (studies + 1),
                      f"{len(cfg.inits)} inits x ({len(cfg.depths)} depths x {len(cfg.lrs)} lrs + the probe)")
    study.validate(study_config(cfg, cfg.deepest, cfg.lrs[0]))
    probe.validate(probe_config(cfg))


def plan(cfg: DepthConfig) -> List[study.StudyConfig]:
    """One study per lr x depth (every init x seed of it), lr by lr, deepest first: an interrupted
    experiment has the most telling column. Only the deepest depth records curves."""
    cfg = resolve(cfg)
    return [study_config(cfg, d, lr) for lr in cfg.lrs for d in sorted(cfg.depths, reverse=True)]


def collect(config: dict, runs: Sequence[dict]) -> Dict[str, List[dict]]:
    """runs.csv (one row per finished run, tagged with its depth and lr) and curves.csv (the deepest
    depth's), each (depth, lr) numbered on its own in plan order, as one study of it numbers them."""
    groups: Dict[tuple, List[dict]] = {}
    for run in runs:
        c = run["config"]
        groups.setdefault((c["depth"], c["train"]["lr"]), []).append(run)
    rows, curves = [], []
    for (depth, lr), members in groups.items():
        tag = {"depth": depth, "lr": lr}
        block = []
        for k, run in enumerate(members):
            rows.append({**tag, **run["row"], "run": k})
            block += [{**tag, **c, "run": k} for c in run["tables"].get("curves", [])]
        curves += sorted(block, key=lambda c: (c["step"], c["run"]))
    return {"curves": curves, "runs": rows}


def prepare(cfg: DepthConfig, out: Path, dataset, resume: bool = False, progress: bool = True) -> None:
    """probe.csv: the deepest net's signal at initialization (no training, seconds), before the runs; a
    resume keeps the one there."""
    if resume and (Path(out) / "probe.csv").exists():
        return
    rows = probe.run_probe(probe_config(resolve(cfg)), dataset=dataset, progress=progress)
    files.atomic_write_text(Path(out) / "probe.csv", files.rows_to_csv(rows))


EXPERIMENT = Experiment(
    "depth", config=DepthConfig, plan=plan, collect=collect, prepare=prepare, validate=validate,
    resolve=resolve,
    small={"depths": [2, 3, 4], "inits": ["xavier", "kaiming"], "lrs": [0.01], "seeds": 2, "width": 16,
           "train_size": 640},
    help="deep plain nets: accuracy against depth per init and learning rate, and the signal at "
         "initialization (He et al. 2015, Fig. 3); resumable",
    description="Train a plain net (no normalization, no skip connections) at every depth x lr x init x "
                "seed for one epoch, probe the deepest net's signal at initialization, and report how "
                "deep each init still trains.")
