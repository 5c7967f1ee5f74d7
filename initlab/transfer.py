"""Transfer learning as an initialization: pretrain on one dataset, start another from those weights.

``initlab transfer --from fashion_mnist --to mnist`` (or the reverse):

1. **Pretrain** the model (LeNet-5 by default) on the *source* training set with ``kaiming`` init,
   one model per seed (all seeds in one stack), for ``--pretrain-epochs`` epochs; each is saved as a
   checkpoint ``pretrained-seed<S>.pt`` (``torch.save({"state_dict", "config", "model", "dataset",
   ...})``). ``--from-checkpoint PATH`` skips this and starts every seed from that one checkpoint.
2. **Initialize** target models from the pretrained weights, three ways:

   ``finetune``     every weight copied, every layer trained;
   ``freeze``       every weight copied; the convolutions (LeNet-5: c1, c3, c5) frozen -- their
                    gradients zeroed before each optimizer step (``engine.train_stack(frozen=...)``),
                    so with weight decay 0 Adam leaves them exactly as pretrained;
   ``reinit_head``  every weight copied, then the output layer redrawn with ``kaiming`` (the same
                    draw as the ``kaiming`` scratch model of that seed, bias 0).

   and compare them with scratch inits (``kaiming``, ``xavier``; any spec ``initlab inits`` lists).
3. **Train on the target** with little and more data (``--target-sizes``, default 100 1000 10000):
   every init of a seed sees the same images in the same order (the engine's ``data_order``; the
   subset is the first N of one fixed shuffle, the same for every seed). A tiny subset gives few
   steps per epoch (100 images at batch 32: 4), so each size trains
   ``max(--target-epochs, ceil(--min-steps / steps per epoch))`` epochs -- at least 300 steps by
   default: 100 images -> 75 epochs (300 steps), 1,000 -> 10 (320), 10,000 -> 1 (313).
   ``freeze`` runs in its own stack (freezing applies to a whole stack) with the same seeds, hence
   the same data order.

The output folder gets ``runs.csv`` (one row per run: ``init``, ``target_images``, ``seed``,
``test_acc``, ``steps_to_90``, ``steps_to_97``, held-out accuracy at early steps ...), ``curves.csv``,
``pretrain.csv``, ``config.json``, ``meta.json``, the checkpoints and ``report.md`` / ``report.html``
(``write_report``, from those files alone).

torch and the rest of initlab are imported inside the functions that use them, so that building the
command line (``initlab --help``) stays as fast as it is without this module.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    from . import engine

MODES = ("finetune", "freeze", "reinit_head")
SCRATCH_INITS = ("kaiming", "xavier")
TARGET_SIZES = (100, 1000, 10000)
MIN_STEPS = 300            # a 100-image subset still gets 300 steps (75 epochs), like 10,000 images get
RECORD_EVERY = 20          # curve points every 20 steps (every 5 over the first 40)
EARLY_STEPS = (20, 100)    # "early": held-out accuracy after this many steps (must be record points)
HEAD_INIT = "kaiming"      # reinit_head redraws the output layer with this
PRETRAIN_SEED_OFFSET = 20_000  # pretraining draws from its own generator, not the scratch runs'


class TransferError(ValueError):
    """A one-line problem with a transfer setting or checkpoint (exit code 2 at the command line)."""


def _default_train():
    from .engine import TrainConfig

    return TrainConfig(record_every=RECORD_EVERY)


@dataclass
class TransferConfig:
    """Everything a transfer run depends on; written next to its results as ``config.json``."""
    source: str = "fashion_mnist"   # pretraining dataset (ignored with from_checkpoint)
    target: str = "mnist"
    model: str = "lenet5"
    activation: str = "relu"
    pretrain_epochs: int = 1
    pretrain_size: Optional[int] = None   # pretrain on the first N source images of a fixed shuffle
    pretrain_init: str = "kaiming"
    modes: List[str] = field(default_factory=lambda: list(MODES))
    inits: List[str] = field(default_factory=lambda: list(SCRATCH_INITS))   # scratch baselines
    target_sizes: List[int] = field(default_factory=lambda: list(TARGET_SIZES))
    min_steps: int = MIN_STEPS      # each target size trains at least this many steps ...
    target_epochs: int = 1          # ... and at least this many epochs
    seeds: int = 2
    first_seed: int = 0
    from_checkpoint: Optional[str] = None
    device: str = "auto"
    train: engine.TrainConfig = field(default_factory=_default_train)   # lr, batch, optimizer, records

    @property
    def seed_list(self) -> List[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def model_options(self) -> Dict:
        return {"activation": self.activation}


def validate(cfg: TransferConfig) -> None:
    """Raise TransferError with a one-line message for the first bad setting."""
    from . import data, init, models
    from .activations import ACTIVATIONS

    t = cfg.train
    names = data.dataset_names()
    checks = [
        (cfg.source in names, f"unknown source dataset {cfg.source!r}; choose from: {', '.join(names)}"),
        (cfg.target in names, f"unknown target dataset {cfg.target!r}; choose from: {', '.join(names)}"),
        (cfg.model in models.MODELS,
         f"unknown model {cfg.model!r}; choose from: {', '.join(models.MODELS.names())}"),
        (cfg.activation in ACTIVATIONS,
         f"unknown activation {cfg.activation!r}; choose from: {', '.join(ACTIVATIONS.names())}"),
        (all(m in MODES for m in cfg.modes),
         f"unknown mode in {' '.join(cfg.modes)}; choose from: {', '.join(MODES)}"),
        (bool(cfg.modes or cfg.inits), "nothing to compare: give --modes and/or --inits"),
        (bool(cfg.target_sizes) and all(n >= 1 for n in cfg.target_sizes),
         f"--target-sizes must be >= 1, got {cfg.target_sizes}"),
        (cfg.seeds >= 1, f"--seeds must be >= 1, got {cfg.seeds}"),
        (cfg.pretrain_epochs >= 1, f"--pretrain-epochs must be >= 1, got {cfg.pretrain_epochs}"),
        (cfg.pretrain_size is None or cfg.pretrain_size >= 1,
         f"--pretrain-size must be >= 1, got {cfg.pretrain_size}"),
        (cfg.target_epochs >= 1, f"--target-epochs must be >= 1, got {cfg.target_epochs}"),
        (cfg.min_steps >= 0, f"--min-steps must be >= 0, got {cfg.min_steps}"),
        (math.isfinite(t.lr) and t.lr > 0, f"--lr must be > 0, got {t.lr}"),
        (t.batch_size >= 1, f"--batch-size must be >= 1, got {t.batch_size}"),
        (t.record_every >= 1, f"--record-every must be >= 1, got {t.record_every}"),
        ("freeze" not in cfg.modes or t.weight_decay == 0,
         "freeze needs weight decay 0 (decay would move the frozen layers)"),
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         f"unknown device {cfg.device!r}; choose from: auto, cpu, cuda"),
    ]
    for ok, message in checks:
        if not ok:
            raise TransferError(message)
    for spec in [cfg.pretrain_init, *cfg.inits]:
        try:
            name, _ = init.parse_spec(spec)
            init.init_params(name)
        except ValueError as e:
            raise TransferError(str(e)) from None
    if "freeze" in cfg.modes and not conv_layers(models.build(cfg.model, **cfg.model_options())):
        raise TransferError(f"freeze freezes the convolutions, and {cfg.model} has none; "
                            f"use --modes finetune reinit_head")


# --------------------------------------------------------------------------------------------------
# Layers, checkpoints
# --------------------------------------------------------------------------------------------------

def conv_layers(model) -> List[str]:
    """Names of the model's convolutions: what ``freeze`` holds fixed (LeNet-5: c1, c3, c5)."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def head_layer(model) -> str:
    """Name of the output layer (the last Conv/Linear): what ``reinit_head`` redraws."""
    from .models import weight_layers

    return weight_layers(model)[-1][0]


def save_checkpoint(path: Path, model, *, model_name: str, model_options: Dict, dataset: str,
                    config: Dict, **extra) -> Path:
    """``torch.save({"state_dict", "config", "model", "model_options", "dataset", ...})``, atomically."""
    import torch

    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": config, "model": model_name, "model_options": dict(model_options),
               "dataset": dataset, **extra}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, model_name: str, model_options: Dict) -> Tuple[Dict, Dict]:
    """The state dict of a checkpoint that fits ``model_name`` built with ``model_options``, and the
    rest of the checkpoint. Anything else -- a missing or unreadable file, another model, other
    options, another shape -- is a one-line ``TransferError``."""
    import torch

    from . import models

    path = Path(path)
    if not path.is_file():
        raise TransferError(f"checkpoint {path} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails in many ways (zip, pickle, storage size)
        raise TransferError(f"checkpoint {path} is not readable ({' '.join(str(e).split())[:160]})") from None
    need = ("state_dict", "model", "config", "dataset")
    if not isinstance(ck, dict) or any(k not in ck for k in need) or not isinstance(ck["state_dict"], dict):
        raise TransferError(f"checkpoint {path} is not an initlab checkpoint (needs {', '.join(need)})")
    if ck["model"] != model_name:
        raise TransferError(f"checkpoint {path} holds a {ck['model']!r} model, but this run's model is "
                            f"{model_name!r} (--model)")
    theirs = ck.get("model_options") or {}
    for key in sorted(set(theirs) | set(model_options)):
        if key in theirs and key in model_options and theirs[key] != model_options[key]:
            raise TransferError(f"checkpoint {path} was trained with {key}={theirs[key]!r}, this run "
                                f"uses {key}={model_options[key]!r}")
    mine = models.build(model_name, **model_options).state_dict()
    sd = ck["state_dict"]
    missing, unexpected = sorted(set(mine) - set(sd)), sorted(set(sd) - set(mine))
    if missing or unexpected:
        raise TransferError(f"checkpoint {path} does not fit {model_name}: missing "
                            f"{', '.join(missing) or 'nothing'}; unexpected {', '.join(unexpected) or 'nothing'}")
    for k, v in mine.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise TransferError(f"checkpoint {path} does not fit {model_name}: {k} is "
                                f"{tuple(sd[k].shape)} in the checkpoint, {tuple(v.shape)} in the model")
    return sd, {k: v for k, v in ck.items() if k != "state_dict"}


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------

@dataclass
class TransferResult:
    runs: List[dict]
    curves: List[dict]
    pretrain: List[dict]
    plan: List[dict]          # per target size: images, epochs, steps
    interrupted: bool = False
    wall_seconds: float = 0.0


def epochs_for(n_images: int, batch_size: int, min_steps: int, min_epochs: int) -> int:
    """Epochs over ``n_images`` so that training lasts at least ``min_steps`` steps and ``min_epochs``
    epochs: ``max(min_epochs, ceil(min_steps / ceil(n_images / batch_size)))``."""
    per_epoch = math.ceil(n_images / batch_size)
    return max(min_epochs, math.ceil(min_steps / per_epoch))


def acc_at(curve: List[dict], step: int) -> Optional[float]:
    """Held-out accuracy recorded at exactly ``step`` (None if that step was not a record point)."""
    return next((r["heldout_acc"] for r in curve if r["step"] == step), None)


def pretrain(cfg: TransferConfig, ds, out: Optional[Path], device, progress=None):
    """Pretrain one model per seed on the source dataset ``ds`` (one stack) and save each as a
    checkpoint in ``out``. Returns ({seed: state_dict}, [one row per seed])."""
    import torch

    from . import engine, init, models

    src = engine.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                         cfg.train, device, mean=ds.mean, std=ds.std)
    seeds = cfg.seed_list
    stack = []
    for seed in seeds:
        m = models.build(cfg.model, **cfg.model_options())
        init.initialize(m, cfg.pretrain_init, activation=cfg.activation,
                        generator=torch.Generator().manual_seed(PRETRAIN_SEED_OFFSET + seed),
                        data=src.x_train[:256])
        stack.append([m])
    size = cfg.pretrain_size if cfg.pretrain_size and cfg.pretrain_size < len(src.x_train) else None
    pcfg = replace(cfg.train, epochs=cfg.pretrain_epochs, train_size=size, record=False)
    res = engine.train_stack(stack, seeds, src, pcfg, progress=progress)
    if res.interrupted:
        raise KeyboardInterrupt
    states, rows = {}, []
    for s_idx, seed in enumerate(seeds):
        model = stack[s_idx][0]
        states[seed] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row = {"seed": seed, "source": cfg.source, "init": cfg.pretrain_init,
               "epochs": cfg.pretrain_epochs, "images": size or len(src.x_train), "steps": res.steps,
               "test_acc": float(res.test_acc[s_idx, 0]), "test_loss": float(res.test_loss[s_idx, 0]),
               "seconds": res.wall_seconds, "checkpoint": None}
        if out is not None:
            path = save_checkpoint(
                Path(out) / f"pretrained-seed{seed}.pt", model, model_name=cfg.model,
                model_options=cfg.model_options(), dataset=cfg.source,
                config={"init": cfg.pretrain_init, "seed": seed, "epochs": cfg.pretrain_epochs,
                        "train": asdict(pcfg)},
                test_acc=row["test_acc"])
            row["checkpoint"] = path.name
        rows.append(row)
    return states, rows


def _member(cfg: TransferConfig, name: str, seed: int, state: Optional[Dict], data_x):
    """One target model: a transfer mode (from ``state``) or a scratch init spec."""
    import torch

    from . import init, models
    from .study import init_generator

    model = models.build(cfg.model, **cfg.model_options())
    if name not in MODES:
        init.initialize(model, name, generator=init_generator(seed), activation=cfg.activation,
                        data=data_x[:256])
        return model
    model.load_state_dict(state)
    if name == "reinit_head":
        fresh = models.build(cfg.model, **cfg.model_options())
        init.initialize(fresh, HEAD_INIT, generator=init_generator(seed), activation=cfg.activation)
        head = head_layer(model)
        with torch.no_grad():
            for p_name, p in dict(model.named_parameters()).items():
                if p_name.startswith(head + "."):
                    p.copy_(dict(fresh.named_parameters())[p_name])
    return model


def run_transfer(cfg: TransferConfig, out: Optional[Path] = None, progress: bool = True) -> TransferResult:
    """Pretrain (or load the checkpoint), then train every (target size, seed, init); see the module
    docstring. Ctrl-C keeps the finished target sizes."""
    import torch
    from tqdm import tqdm

    from . import data as data_mod
    from . import engine, models
    from .study import resolve_device

    validate(cfg)
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    seeds = cfg.seed_list
    tgt = data_mod.load_dataset(cfg.target, quiet=not progress)
    n_train = len(tgt.train_images)
    try:
        with torch.no_grad():
            models.build(cfg.model, **cfg.model_options())(engine.to_float_images(tgt.train_images[:1], False, "cpu"))
    except RuntimeError as e:
        raise TransferError(f"{cfg.model} cannot take {cfg.target} images of shape "
                            f"{tuple(tgt.train_images.shape[1:])} ({' '.join(str(e).split())[:120]})") from None
    for n in cfg.target_sizes:
        if n > n_train:
            raise TransferError(f"--target-sizes {n} exceeds the {n_train:,} training images of {cfg.target}")
    plan = []
    for n in cfg.target_sizes:
        epochs = epochs_for(n, cfg.train.batch_size, cfg.min_steps, cfg.target_epochs)
        plan.append({"target_images": n, "epochs": epochs,
                     "steps": engine.steps_for(n, replace(cfg.train, epochs=epochs))})
    src = None if cfg.from_checkpoint else data_mod.load_dataset(cfg.source, quiet=not progress)
    if src is not None and src.train_images.shape[1:] != tgt.train_images.shape[1:]:
        raise TransferError(f"{cfg.source} images are {tuple(src.train_images.shape[1:])}, {cfg.target} "
                            f"images {tuple(tgt.train_images.shape[1:])}: one model cannot take both")
    pre_steps = 0 if src is None else \
        engine.steps_for(min(cfg.pretrain_size or len(src.train_images), len(src.train_images)),
                         replace(cfg.train, epochs=cfg.pretrain_epochs))
    bar = tqdm(total=pre_steps + sum(p["steps"] * (1 + ("freeze" in cfg.modes)) for p in plan),
               desc=f"transfer {cfg.source}->{cfg.target}", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 15.0)
    result = TransferResult([], [], [], plan)
    try:
        if cfg.from_checkpoint:
            sd, info = load_checkpoint(cfg.from_checkpoint, cfg.model, cfg.model_options())
            states = {seed: sd for seed in seeds}
            result.pretrain = [{"seed": seed, "source": info["dataset"], "checkpoint": str(cfg.from_checkpoint),
                                "test_acc": info.get("test_acc")} for seed in seeds]
        else:
            states, result.pretrain = pretrain(cfg, src, out, device, progress=bar.update)
            src = None  # free the source images before the target's are made float
        data = engine.prepare(tgt.train_images, tgt.train_labels, tgt.test_images, tgt.test_labels,
                              cfg.train, device, mean=tgt.mean, std=tgt.std)
        pre_acc = {r["seed"]: r.get("test_acc") for r in result.pretrain}
        source = result.pretrain[0]["source"] if result.pretrain else cfg.source
        for p in plan:
            n = p["target_images"]
            tcfg = replace(cfg.train, epochs=p["epochs"], train_size=None if n == n_train else n)
            groups = [([m for m in cfg.modes if m != "freeze"] + list(cfg.inits), ())]
            if "freeze" in cfg.modes:
                groups.append((["freeze"], conv_layers(models.build(cfg.model, **cfg.model_options()))))
            for members, frozen in groups:
                if not members:
                    continue
                stack = [[_member(cfg, m, s, states[s], data.x_train) for m in members] for s in seeds]
                res = engine.train_stack(stack, seeds, data, tcfg, progress=bar.update, frozen=frozen)
                _collect(result, cfg, p, members, seeds, res, source, pre_acc)
                if res.interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    result.wall_seconds = time.perf_counter() - t0
    return result


def _collect(result: TransferResult, cfg: TransferConfig, plan: dict, members: List[str],
             seeds: List[int], res, source: str, pre_acc: Dict) -> None:
    from .study import steps_to

    I = len(members)
    for s_idx, seed in enumerate(seeds):
        for i_idx, name in enumerate(members):
            r = s_idx * I + i_idx
            curve = [c for c in res.records.curves if c["run"] == r]
            key = {"init": name, "target_images": plan["target_images"], "seed": seed}
            result.curves.extend({**key, **{k: v for k, v in c.items() if k != "run"}} for c in curve)
            dstep = int(res.diverged_step[s_idx, i_idx])
            result.runs.append({
                **key, "kind": "transfer" if name in MODES else "scratch",
                "source": source if name in MODES else None, "target": cfg.target,
                "test_acc": float(res.test_acc[s_idx, i_idx]),
                "test_loss": float(res.test_loss[s_idx, i_idx]),
                "acc_at_0": acc_at(curve, 0),
                **{f"acc_at_{s}": acc_at(curve, s) for s in EARLY_STEPS},
                "steps_to_90": steps_to(curve, 0.90), "steps_to_97": steps_to(curve, 0.97),
                "steps": res.steps, "epochs": plan["epochs"],
                "pretrain_test_acc": pre_acc.get(seed) if name in MODES else None,
                "diverged": dstep >= 0, "train_seconds": res.wall_seconds / (len(seeds) * I),
                "interrupted": res.interrupted,
            })


def write_tables(out: Path, cfg: TransferConfig, result: TransferResult) -> None:
    """config.json, meta.json, runs.csv, curves.csv, pretrain.csv -- each atomically."""
    from .study import atomic_write_text, environment, rows_to_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {**asdict(cfg), "seed_list": cfg.seed_list, "plan": result.plan,
              "head_init": HEAD_INIT, "early_steps": list(EARLY_STEPS)}
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    meta = {"environment": environment(), "interrupted": result.interrupted,
            "wall_seconds": result.wall_seconds}
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    for name, rows in (("runs", result.runs), ("curves", result.curves), ("pretrain", result.pretrain)):
        atomic_write_text(out / f"{name}.csv", rows_to_csv(rows))


# --------------------------------------------------------------------------------------------------
# Report: from the files alone
# --------------------------------------------------------------------------------------------------

def _load(out: Path) -> Dict:
    from .study import read_csv

    out = Path(out)

    def table(name):
        p = out / f"{name}.csv"
        return read_csv(p) if p.exists() and p.stat().st_size else []

    meta = out / "meta.json"
    return {"out": out, "config": json.loads((out / "config.json").read_text()),
            "meta": json.loads(meta.read_text()) if meta.exists() else {},
            "runs": table("runs"), "curves": table("curves"), "pretrain": table("pretrain")}


def _inits(f: Dict) -> List[str]:
    """Transfer modes first, then scratch inits, in the order of the config."""
    order = list(f["config"].get("modes") or []) + list(f["config"].get("inits") or [])
    seen = {r["init"] for r in f["runs"]}
    return [i for i in order if i in seen] + sorted(seen - set(order))


def summary_rows(f: Dict) -> List[dict]:
    """One row per (target size, init): test accuracy mean/std/min over seeds, early held-out
    accuracy, steps to 90/97 % (mean; None unless every seed got there)."""
    from .report import _mean, _std

    groups: Dict[Tuple[int, str], List[dict]] = defaultdict(list)
    for r in f["runs"]:
        groups[(r["target_images"], r["init"])].append(r)
    rows = []
    order = {name: k for k, name in enumerate(_inits(f))}
    for (n, name), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        accs = [r["test_acc"] for r in runs]
        row = {"target_images": n, "init": name, "kind": runs[0]["kind"], "n": len(runs),
               "acc_mean": _mean(accs), "acc_std": _std(accs), "acc_min": min(accs)}
        for s in [0, *EARLY_STEPS]:
            vals = [r.get(f"acc_at_{s}") for r in runs]
            row[f"acc_at_{s}"] = None if any(v is None for v in vals) else _mean(vals)
        for key in ("steps_to_90", "steps_to_97"):
            vals = [r[key] for r in runs]
            row[key] = None if any(v is None for v in vals) else _mean(vals)
            row["reached_" + key[-2:]] = sum(v is not None for v in vals)
        rows.append(row)
    return rows


def summary_table(f: Dict) -> Tuple[List[str], List[List[str]]]:
    from .report import _pct

    head = ["target images", "init", "test acc (mean ± std)", "min"] + \
        [f"acc @ step {s}" for s in EARLY_STEPS] + ["steps to 90 %", "steps to 97 %"]

    def steps(row, key):
        v, reached = row[key], row["reached_" + key[-2:]]
        if v is None:
            return f"never ({reached}/{row['n']})" if reached else "never"
        return f"{v:,.0f}"

    body = [[f"{r['target_images']:,}", r["init"], f"{_pct(r['acc_mean'])} ± {100 * r['acc_std']:.2f}",
             _pct(r["acc_min"])] + [_pct(r[f"acc_at_{s}"], 1) if r[f"acc_at_{s}"] is not None else "n/a"
                                    for s in EARLY_STEPS]
            + [steps(r, "steps_to_90"), steps(r, "steps_to_97")] for r in summary_rows(f)]
    return head, body


def observations(f: Dict) -> List[str]:
    """Sentences computed from the summary: where pretraining helps and where it stops mattering."""
    rows = summary_rows(f)
    sizes = sorted({r["target_images"] for r in rows})
    out: List[str] = []
    gaps = []
    pts = lambda x: f"{100 * x:+.2f} pts"
    for n in sizes:
        here = [r for r in rows if r["target_images"] == n]
        tr = [r for r in here if r["kind"] == "transfer"]
        sc = [r for r in here if r["kind"] == "scratch"]
        if not tr or not sc:
            continue
        bt, bs = max(tr, key=lambda r: r["acc_mean"]), max(sc, key=lambda r: r["acc_mean"])
        gap = bt["acc_mean"] - bs["acc_mean"]
        noise = max(bt["acc_std"], bs["acc_std"])
        gaps.append((n, gap, noise, bt, bs))
        s = (f"{n:,} target images: best pretrained init {bt['init']} ends at {100 * bt['acc_mean']:.2f} % "
             f"test accuracy, best scratch init {bs['init']} at {100 * bs['acc_mean']:.2f} % "
             f"({pts(gap)}; seed std up to {100 * noise:.2f} pts)")
        early = [(st, max((r[f"acc_at_{st}"] for r in tr if r[f"acc_at_{st}"] is not None), default=None),
                  max((r[f"acc_at_{st}"] for r in sc if r[f"acc_at_{st}"] is not None), default=None))
                 for st in EARLY_STEPS]
        early = [(st, a, b) for st, a, b in early if a is not None and b is not None]
        if early:
            s += "; held-out accuracy after " + ", ".join(
                f"{st} steps {100 * a:.1f} % vs {100 * b:.1f} % ({pts(a - b)})" for st, a, b in early)
        for key in ("steps_to_90", "steps_to_97"):
            a, b = bt[key], bs[key]
            if a is not None or b is not None:
                fa = "never" if a is None else f"{a:,.0f}"
                fb = "never" if b is None else f"{b:,.0f}"
                s += f"; steps to {key[-2:]} %: {fa} vs {fb}"
        out.append(s + ".")
    if gaps:
        parts = ", ".join(f"{pts(g)} at {n:,}" for n, g, _, _, _ in gaps)
        s = f"The final-accuracy difference, best pretrained minus best scratch, is {parts} images"
        margin = lambda noise: max(2 * noise, 0.005)
        helped = [n for n, g, noise, _, _ in gaps if g > margin(noise)]
        hurt = [n for n, g, noise, _, _ in gaps if g < -margin(noise)]
        settled = [n for n, g, noise, _, _ in gaps if abs(g) <= margin(noise)]
        sizes_ = lambda ns: ", ".join(f"{n:,}" for n in ns)
        if helped:
            s += (f". Pretraining ends higher beyond the seed spread (by more than 2 std and 0.5 pts) "
                  f"at {sizes_(helped)} images")
        else:
            s += (". At no size does pretraining end higher beyond the seed spread (by more than 2 std "
                  "and 0.5 pts)")
        if hurt:
            s += f"; it ends lower beyond the spread at {sizes_(hurt)} images"
        if settled:
            s += (f"; at {sizes_(settled)} images the difference is within 2 std of the seeds or 0.5 "
                  f"pts: there pretraining does not change where training ends")
        out.append(s + ".")
    # freezing: the pretrained features with only f6 and the output relearned, versus fine-tuning all
    fz = {r["target_images"]: r["acc_mean"] for r in rows if r["init"] == "freeze"}
    ft = {r["target_images"]: r["acc_mean"] for r in rows if r["init"] == "finetune"}
    both = [n for n in sizes if n in fz and n in ft]
    if both:
        out.append("Frozen convolutions minus fine-tuned ones, final accuracy: " + ", ".join(
            f"{pts(fz[n] - ft[n])} at {n:,} images" for n in both) + ".")
    zero = [r for r in rows if r["kind"] == "transfer" and r["acc_at_0"] is not None
            and r["target_images"] == sizes[0]] if sizes else []
    if zero:
        out.append("Held-out accuracy before any target step: " + ", ".join(
            f"{r['init']} {100 * r['acc_at_0']:.1f} %" for r in zero)
            + f" -- the pretrained head answers with {f['config'].get('source')} classes, so the "
            f"transfer is in the features, not the labels.")
    pre = [r["test_acc"] for r in f["pretrain"] if r.get("test_acc") is not None]
    if pre:
        out.append(f"The pretrained models reached {100 * min(pre):.2f}–{100 * max(pre):.2f} % on the "
                   f"{f['pretrain'][0]['source']} test set ({len(pre)} seed(s)).")
    return out


def _bands(f: Dict, n: int):
    from .report import _mean

    out = {}
    for name in _inits(f):
        per_step: Dict[int, List[float]] = defaultdict(list)
        for r in f["curves"]:
            if r["target_images"] == n and r["init"] == name and r["heldout_acc"] is not None:
                per_step[r["step"]].append(r["heldout_acc"])
        steps = sorted(per_step)
        if steps:
            out[name] = (steps, [_mean(per_step[s]) for s in steps],
                         [min(per_step[s]) for s in steps], [max(per_step[s]) for s in steps])
    return out


def plot_curves(f: Dict, path: Path) -> Path:
    """One panel per target size: held-out accuracy against step (mean, min–max band over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _colors

    sizes = sorted({r["target_images"] for r in f["runs"]})
    colors = _colors(_inits(f))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
    n_seeds = len({r["seed"] for r in f["runs"]})
    for ax, n in zip(axes[0], sizes):
        for name, (steps, mean, lo, hi) in _bands(f, n).items():
            style = "-" if name in MODES else "--"
            ax.plot(steps, mean, style, color=colors[name], label=name, lw=1.8)
            ax.fill_between(steps, lo, hi, color=colors[name], alpha=0.15, lw=0)
        ax.set(title=f"{n:,} target images", xlabel="step", ylabel="held-out accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][0].legend(title=f"solid: pretrained, dashed: scratch\n(mean, band min–max of {n_seeds} seeds)",
                      fontsize=8, title_fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_sizes(f: Dict, path: Path) -> Path:
    """Accuracy against target-set size: early (after the last early step) and final."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _colors

    rows = summary_rows(f)
    colors = _colors(_inits(f))
    early = EARLY_STEPS[-1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in _inits(f):
        mine = [r for r in rows if r["init"] == name]
        xs = [r["target_images"] for r in mine]
        style = "o-" if name in MODES else "s--"
        e = [(x, r[f"acc_at_{early}"]) for x, r in zip(xs, mine) if r[f"acc_at_{early}"] is not None]
        if e:
            axes[0].plot([x for x, _ in e], [y for _, y in e], style, color=colors[name], label=name)
        axes[1].errorbar(xs, [r["acc_mean"] for r in mine], yerr=[r["acc_std"] for r in mine],
                         fmt=style, color=colors[name], label=name, capsize=3)
    axes[0].set(title=f"Held-out accuracy after {early} steps", xscale="log", xlabel="target images",
                ylabel="accuracy")
    axes[1].set(title="Final test accuracy (mean ± std over seeds)", xscale="log",
                xlabel="target images", ylabel="accuracy")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def settings_line(f: Dict) -> str:
    c, t = f["config"], f["config"].get("train", {})
    env = f["meta"].get("environment", {})
    plan = ", ".join(f"{p['target_images']:,} images: {p['epochs']} epoch(s) = {p['steps']} steps"
                     for p in c.get("plan", []))
    pre = (f"from checkpoint {c['from_checkpoint']}" if c.get("from_checkpoint") else
           f"pretrained {c.get('pretrain_epochs')} epoch(s) on "
           + (f"{c['pretrain_size']:,} images of " if c.get("pretrain_size") else "")
           + f"{c.get('source')} with {c.get('pretrain_init')} init")
    return (f"{c.get('model')} ({c.get('activation')}), {pre}; target {c.get('target')}: {plan}; "
            f"{t.get('optimizer')} lr {t.get('lr')}, batch {t.get('batch_size')}; seeds "
            f"{', '.join(map(str, c.get('seed_list', [])))}; reinit_head redraws the head with "
            f"{c.get('head_init')}; torch {env.get('torch')}, {env.get('cpu_threads')} CPU threads"
            + (f", GPU {env['cuda']}" if env.get("cuda") else "")
            + f"; {f['meta'].get('wall_seconds', math.nan):.0f} s in all")


def write_report(out: Path, title: Optional[str] = None) -> Path:
    """report.md and a self-contained report.html in ``out``, from its files; returns the HTML path."""
    from .report import PAGE_STYLE, _html_table, _md_table, html_image, html_page
    from .study import atomic_write_text

    f = _load(out)
    c = f["config"]
    title = title or f"initlab transfer: {c.get('source')} -> {c.get('target')} as an initialization"
    note = " (interrupted: only the runs recorded so far)" if f["meta"].get("interrupted") else ""
    head, body = summary_table(f)
    obs = observations(f)
    plots = [("Held-out accuracy during target training", plot_curves(f, f["out"] / "curves.png")),
             ("Accuracy against the amount of target data", plot_sizes(f, f["out"] / "sizes.png"))]
    explain = ("Inits: finetune = pretrained weights, all layers trained; freeze = pretrained weights, "
               "convolutions frozen; reinit_head = pretrained weights with the output layer redrawn; "
               "the others are scratch inits. Every init of a seed sees the same target images in the "
               "same order. Test accuracy on the full test split; curves and steps to 90/97 % on its "
               "first held-out images (first record point at or above; 'never (k/n)' when only k of n "
               "seeds got there).")
    md = [f"# {title}{note}", "", settings_line(f) + ".", "", "## Results", "", _md_table(head, body), "",
          explain, "", "## Where pretraining helps, and where it stops mattering", ""]
    md += [f"- {s}" for s in obs] + ["", "## Plots", ""]
    for caption, p in plots:
        md += [f"### {caption}", "", f"![{caption}]({p.name})", ""]
    md += ["## Files", "", "`runs.csv` (one row per run), `curves.csv`, `pretrain.csv`, `config.json` "
           "(the resolved configuration, with the steps per target size), `meta.json` (environment), "
           "`pretrained-seed*.pt` (checkpoints, reusable with `--from-checkpoint`).", ""]
    atomic_write_text(f["out"] / "report.md", "\n".join(md))
    parts = [f"<h1>{html.escape(title + note)}</h1>", f"<p>{html.escape(settings_line(f))}.</p>",
             "<h2>Results</h2>", _html_table(head, body), f"<p>{html.escape(explain)}</p>",
             "<h2>Where pretraining helps, and where it stops mattering</h2><ul>"
             + "".join(f"<li>{html.escape(s)}</li>" for s in obs) + "</ul>", "<h2>Plots</h2>"]
    parts += [html_image(caption, p) for caption, p in plots]
    style = PAGE_STYLE.replace("td:first-child,th:first-child", "td:nth-child(2),th:nth-child(2)")
    page = html_page(title, parts, style)
    atomic_write_text(f["out"] / "report.html", page)
    return f["out"] / "report.html"


# --------------------------------------------------------------------------------------------------
# Command line: ``initlab transfer``
# --------------------------------------------------------------------------------------------------

def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``transfer`` subcommand to ``initlab``'s subparsers."""
    p = sub.add_parser(
        "transfer", help="pretrain on one dataset, use the weights as an initialization on another",
        description="Pretrain on --from (kaiming init), initialize models for --to from the weights "
                    "(finetune / freeze / reinit_head) and compare them with scratch inits at several "
                    "amounts of target data, with a report.")
    a = p.add_argument
    a("--from", dest="source", default="fashion_mnist", metavar="DATASET",
      help="source (pretraining) dataset (default fashion_mnist)")
    a("--to", dest="target", default="mnist", metavar="DATASET", help="target dataset (default mnist)")
    a("--model", default="lenet5", help="model (default lenet5)")
    a("--activation", default="relu", help="activation (default relu)")
    a("--pretrain-epochs", type=int, default=1, help="epochs of pretraining on the source (default 1)")
    a("--pretrain-size", type=int, metavar="N",
      help="pretrain on the first N source images of a fixed shuffle (default: all)")
    a("--from-checkpoint", type=Path, metavar="PATH",
      help="start every seed from this checkpoint instead of pretraining")
    a("--modes", nargs="+", default=list(MODES), metavar="MODE",
      help=f"transfer modes (default: {' '.join(MODES)}); none: --modes ''")
    a("--inits", nargs="+", default=list(SCRATCH_INITS), metavar="SPEC",
      help=f"scratch inits to compare with (default: {' '.join(SCRATCH_INITS)}); none: --inits ''")
    a("--target-sizes", nargs="+", type=int, default=list(TARGET_SIZES), metavar="N",
      help="numbers of target training images (default: 100 1000 10000; 60000 = all of MNIST)")
    a("--min-steps", type=int, default=MIN_STEPS,
      help=f"each target size trains at least this many steps (default {MIN_STEPS}) ...")
    a("--target-epochs", type=int, default=1, help="... and at least this many epochs (default 1)")
    a("--seeds", type=int, default=2, help="number of seeds (default 2)")
    a("--first-seed", type=int, default=0, help="first seed (default 0)")
    a("--lr", type=float, default=1e-3, help="Adam learning rate, pretraining and target (default 1e-3)")
    a("--batch-size", type=int, default=32, help="images per step (default 32)")
    a("--record-every", type=int, default=RECORD_EVERY,
      help=f"steps between curve points, 4x denser over the first two (default {RECORD_EVERY})")
    a("--device", default="auto", help="auto | cpu | cuda (default auto)")
    a("--out", type=Path, help="output folder (default runs/<timestamp>-transfer)")
    a("--force", action="store_true", help="write into an --out folder that already holds results")
    a("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_transfer)
    return p


def config_from_args(args) -> TransferConfig:
    t = replace(_default_train(), lr=args.lr, batch_size=args.batch_size, record_every=args.record_every)
    return TransferConfig(
        source=args.source, target=args.target, model=args.model, activation=args.activation,
        pretrain_epochs=args.pretrain_epochs, pretrain_size=args.pretrain_size,
        modes=[m for m in args.modes if m.strip()],
        inits=[i for i in args.inits if i.strip()], target_sizes=list(args.target_sizes),
        min_steps=args.min_steps, target_epochs=args.target_epochs, seeds=args.seeds,
        first_seed=args.first_seed,
        from_checkpoint=str(args.from_checkpoint) if args.from_checkpoint else None,
        device=args.device, train=t)


def cmd_transfer(args) -> int:
    from .cli import UsageError, prepare_out
    from .data import DataError
    from .report import text_table

    cfg = config_from_args(args)
    try:
        validate(cfg)
        if cfg.from_checkpoint:  # a bad checkpoint is found before anything is written or trained
            _, info = load_checkpoint(cfg.from_checkpoint, cfg.model, cfg.model_options())
            cfg.source = str(info["dataset"])   # the resolved config names the real source
    except TransferError as e:
        raise UsageError(str(e)) from None
    if cfg.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UsageError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    out = prepare_out(args.out, "transfer", args.force)
    try:
        result = run_transfer(cfg, out=out, progress=not args.quiet)
    except (TransferError, DataError) as e:
        raise UsageError(str(e)) from None
    write_tables(out, cfg, result)
    if not result.runs:
        print(f"interrupted before any target run finished; tables in {out}", file=sys.stderr)
        return 130
    path = write_report(out)
    print(text_table(*summary_table(_load(out))))
    if result.interrupted:
        print("interrupted: the report covers the runs finished before Ctrl-C", file=sys.stderr)
    print(f"\nreport: {path}\n        {out / 'report.md'}")
    return 130 if result.interrupted else 0
