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

"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from initlab import data, engine, files, init, models
from initlab import data as data_mod
from initlab.activations import ACTIVATIONS
from initlab.engine import TrainConfig
from initlab.experiments.study import check_seeds, init_generator, resolve_device, steps_to
from initlab.models import weight_layers
from initlab.options import UsageError, flag

MODES = ("finetune", "freeze", "reinit_head")
SCRATCH_INITS = ("kaiming", "xavier")
TARGET_SIZES = (100, 1000, 10000)
MIN_STEPS = 300            # a 100-image subset still gets 300 steps (75 epochs), like 10,000 images get
RECORD_EVERY = 20          # curve points every 20 steps (every 5 over the first 40)
HELDOUT = TrainConfig().heldout_size   # held-out images behind each curve point (steps to 90 % counts them)
EARLY_STEPS = (20, 100)    # "early": held-out accuracy after this many steps (must be record points)
HEAD_INIT = "kaiming"      # reinit_head redraws the output layer with this
PRETRAIN_SEED_OFFSET = 20_000  # pretraining draws from its own generator, not the scratch runs'


TransferError = UsageError   # a bad transfer setting or checkpoint: one line, exit code 2


def _default_train():
    return TrainConfig(record_every=RECORD_EVERY, heldout_size=HELDOUT)


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
        (bool(cfg.modes or cfg.inits), f"nothing to compare: give {flag('modes')} and/or {flag('inits')}"),
        (bool(cfg.target_sizes) and all(n >= 1 for n in cfg.target_sizes),
         f"{flag('target_sizes')} must be >= 1, got {cfg.target_sizes}"),
        (cfg.seeds >= 1, f"{flag('seeds')} must be >= 1, got {cfg.seeds}"),
        (cfg.pretrain_epochs >= 1, f"{flag('pretrain_epochs')} must be >= 1, got {cfg.pretrain_epochs}"),
        (cfg.pretrain_size is None or cfg.pretrain_size >= 1,
         f"{flag('pretrain_size')} must be >= 1, got {cfg.pretrain_size}"),
        (cfg.target_epochs >= 1, f"{flag('target_epochs')} must be >= 1, got {cfg.target_epochs}"),
        (cfg.min_steps >= 0, f"{flag('min_steps')} must be >= 0, got {cfg.min_steps}"),
        (math.isfinite(t.lr) and t.lr > 0, f"{flag('lr')} must be > 0, got {t.lr}"),
        (t.batch_size >= 1, f"{flag('batch_size')} must be >= 1, got {t.batch_size}"),
        (t.record_every >= 1, f"{flag('record_every')} must be >= 1, got {t.record_every}"),
        ("freeze" not in cfg.modes or t.weight_decay == 0,
         "freeze needs weight decay 0 (decay would move the frozen layers)"),
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         f"unknown device {cfg.device!r}; choose from: auto, cpu, cuda"),
    ]
    for ok, message in checks:
        if not ok:
            raise TransferError(message)
    starts = len(cfg.modes) + len(cfg.inits)             # per seed: each start at each target size,
    check_seeds(cfg.seeds, cfg.first_seed, starts * len(cfg.target_sizes) + 1,   # and one pretraining
                f"({starts} modes and inits x {len(cfg.target_sizes)} target sizes + 1 pretraining)")
    n_train = data_mod.DATASETS.get(cfg.target).train_size      # known from the registry, unloaded
    for n in cfg.target_sizes:
        if n > n_train:
            raise TransferError(f"{flag('target_sizes', n)} exceeds the {n_train:,} training images of {cfg.target}")
    smallest = min(cfg.target_sizes)
    if t.batch_size > smallest:
        raise TransferError(f"{flag('batch_size', t.batch_size)} is more than the {smallest:,} training images of "
                            f"{flag('target_sizes', smallest)}: at most {smallest:,}")
    if cfg.pretrain_size is not None and not cfg.from_checkpoint and t.batch_size > cfg.pretrain_size:
        raise TransferError(f"{flag('batch_size', t.batch_size)} is more than the {cfg.pretrain_size:,} training "
                            f"images of {flag('pretrain_size', cfg.pretrain_size)}: at most {cfg.pretrain_size:,}")
    for spec in [cfg.pretrain_init, *cfg.inits]:
        try:
            name, _ = init.parse_spec(spec)
            init.init_params(name)
        except ValueError as e:
            raise TransferError(str(e)) from None
    if "freeze" in cfg.modes and not conv_layers(models.build(cfg.model, **cfg.model_options())):
        raise TransferError(f"freeze freezes the convolutions, and {cfg.model} has none; "
                            f"use {flag('modes')} finetune reinit_head")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise TransferError(f"{flag('device')} cuda asked for, but torch sees no CUDA device; use {flag('device')} cpu")


# --------------------------------------------------------------------------------------------------
# Layers, checkpoints
# --------------------------------------------------------------------------------------------------

def conv_layers(model) -> List[str]:
    """Names of the model's convolutions: what ``freeze`` holds fixed (LeNet-5: c1, c3, c5)."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def head_layer(model) -> str:
    """Name of the output layer (the last Conv/Linear): what ``reinit_head`` redraws."""
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
                            f"{model_name!r} ({flag('model')})")
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
            raise TransferError(f"{flag('target_sizes', n)} exceeds the {n_train:,} training images of {cfg.target}")
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
                "steps_to_90": steps_to(curve, 0.90, HELDOUT), "steps_to_97": steps_to(curve, 0.97, HELDOUT),
                "steps": res.steps, "epochs": plan["epochs"],
                "pretrain_test_acc": pre_acc.get(seed) if name in MODES else None,
                "diverged": dstep >= 0, "train_seconds": res.wall_seconds / (len(seeds) * I),
                "interrupted": res.interrupted,
            })


def write_tables(out: Path, cfg: TransferConfig, result: TransferResult) -> None:
    """config.json, meta.json, curves.csv, pretrain.csv, runs.csv -- each atomically."""
    config = {**asdict(cfg), "seed_list": cfg.seed_list, "plan": result.plan,
              "head_init": HEAD_INIT, "early_steps": list(EARLY_STEPS)}
    files.write_result(out, "transfer", config,
                       {"curves": result.curves, "pretrain": result.pretrain, "runs": result.runs},
                       {"interrupted": result.interrupted, "wall_seconds": result.wall_seconds})
