"""The LAB03-1 study: every init x every seed, trained by the engine, written as tidy tables.

``run_study(cfg)`` builds one model per (seed, init), initializes it from a generator seeded by the run's
seed, trains all of them as stacks (``cfg.seeds_per_stack`` seeds at a time, all inits of a seed share
its data order) and returns a ``StudyResult`` whose tables ``write_tables`` saves as CSV. The report is
made from those files alone (``initlab.report``), so it can be rebuilt at any time.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

from initlab import data as data_mod
from initlab import (
    engine,
    files,
    init,
    models,
)
from initlab.activations import ACTIVATIONS
from initlab.engine import pool
from initlab.init import parametrization as param
from initlab.options import UsageError

LAB_INITS = ("zeros", "uniform", "normal", "xavier", "kaiming")


@dataclass
class StudyConfig:
    """Everything a study run depends on; written next to its results as ``config.json``."""
    inits: List[str] = field(default_factory=lambda: list(LAB_INITS))
    seeds: int = 3                  # seeds 0 .. seeds-1 (each: one data order, one init draw)
    first_seed: int = 0
    model: str = "lenet5"           # a registered model, optionally with settings: 'mlp:width=256,depth=30'
    activation: str = "relu"
    pool: str = "avg"               # LeNet-5 subsampling: avg (the paper's) or max
    c3_table: bool = False          # LeNet-5's partial C3 connections (Table I)
    width: Optional[int] = None     # mlp: units per hidden layer (None: the model's own, 500)
    depth: Optional[int] = None     # mlp: hidden layers (None: the model's own, 2)
    conv: bool = False              # mlp: 3x3 convolutions (padding 1) instead of linear layers
    bias_init: Union[float, str] = 0.0  # every bias starts at this constant, or is drawn from this
                                    # distribution (e.g. 'normal:std=0.1'), for every init
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    device: str = "auto"            # auto | cpu | cuda
    seeds_per_stack: int = 0        # seeds trained together in one batched stack; 0 = all at once
    validation: bool = False        # train on 55,000 training images and test on the 5,000 others
                                    # (``validation_split``): for choosing a recipe without the test set
    parametrization: str = "sp"     # width parametrization: sp | mup:base_width=64 | ntk:base_width=64
                                    # (init, forward and lr multipliers; initlab.init.parametrization)
    workers: int = 0                # training processes; 0 = one per core on the CPU, 1 on a GPU
    draw_offset: int = 10_000       # a run's init is drawn from manual_seed(draw_offset + seed)
    start: Optional[str] = None     # the weights a ``pretrained`` init starts from: "cell:<group hash>"
                                    # (the run of the same seed in that group of the plan, trained
                                    # first by the runner) or a checkpoint file (initlab transfer)
    frozen: List[str] = field(default_factory=list)   # layers held fixed (engine.train_stack(frozen=))
    keep_weights: bool = False      # each run's trained weights are kept with its records (a checkpoint)
    train: engine.TrainConfig = field(default_factory=engine.TrainConfig)

    @property
    def seed_list(self) -> List[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


VALIDATION_IMAGES = 5_000     # carved from the 60,000 training images for recipe choices
VALIDATION_SEED = 1234        # which 5,000: a fixed shuffle, the same for every recipe


def validation_split(ds: data_mod.Dataset) -> data_mod.Dataset:
    """55,000 training images as 'train' and 5,000 others as 'test': for choosing a recipe."""
    perm = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, train = perm[:VALIDATION_IMAGES], perm[VALIDATION_IMAGES:]
    return dataclasses.replace(ds, train_images=ds.train_images[train], train_labels=ds.train_labels[train],
                               test_images=ds.train_images[val], test_labels=ds.train_labels[val],
                               source=ds.source + f" (validation split: {VALIDATION_IMAGES} held out)")


ConfigError = UsageError   # a bad setting, found before any training starts: one line, exit code 2

# --- what is possible: seeds and the number of runs -------------------------------------------------
SEED_MAX = 2**63 - 1    # a seed is an INTEGER of the run store (SQLite: signed 64-bit) and seeds
                        # torch.Generator.manual_seed (which takes up to 2**64 - 1: the offsets the
                        # generators add, 10,000 for an init draw and 20,000 for transfer's pretraining,
                        # still fit); seeds start at 0
MAX_RUNS = 1_000_000    # runs one command may plan (seeds x inits x ...): each run is a model in memory
                        # while its stack trains, a row of the run store and of runs.csv, and its records
                        # on disk; at ~3.4 s per LeNet-5 epoch on one core (1.8 ms a step, 1,875 steps)
                        # a million runs is ~40 core-days -- a larger number is a typo, not a plan


def check_seeds(seeds: int, first_seed: int, per_seed: int = 1, what: str = "",
                flag: str = "--seeds", other_runs: int = 0, other_what: str = "other runs") -> None:
    """Raise ConfigError (one line) unless the seeds ``first_seed .. first_seed + seeds - 1`` lie in
    [0, SEED_MAX] and the runs they make -- ``seeds`` x ``per_seed`` (``what``: "5 inits") plus
    ``other_runs`` (``other_what``) -- are at most MAX_RUNS. ``flag`` names the count (``--ablation`` for bonus's).

    Example:
        >>> check_seeds(10**12, 0, 5, "5 inits")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        initlab.options.UsageError: --seeds 1000000000000: more runs than one command may plan (1,000,...)
    """
    runs = max(seeds, 0) * per_seed + other_runs
    if runs > MAX_RUNS:
        count = f"{seeds:,} seeds" + (f" x {what}" if what else "") + \
            (f" + {other_runs:,} {other_what}" if other_runs else "")
        raise ConfigError(f"{flag} {seeds}: more runs than one command may plan ({count} = {runs:,} runs; "
                          f"at most {MAX_RUNS:,})")
    if first_seed < 0:
        raise ConfigError(f"--first-seed must be >= 0, got {first_seed}")
    if first_seed > SEED_MAX:
        raise ConfigError(f"--first-seed {first_seed}: a seed must be at most 2**63 - 1 = {SEED_MAX} "
                          f"(a SQLite INTEGER, torch's manual_seed)")
    if first_seed + seeds - 1 > SEED_MAX:
        raise ConfigError(f"{flag} {seeds} from --first-seed {first_seed}: the last seed "
                          f"{first_seed + seeds - 1} is past 2**63 - 1 = {SEED_MAX} (a SQLite INTEGER, "
                          f"torch's manual_seed)")


def train_images(dataset: str, train_size: Optional[int], validation: bool = False) -> Optional[int]:
    """How many training images a run of ``dataset`` sees, known from the registry without loading
    (``train_size``, at most the dataset's; less the held-out ``VALIDATION_IMAGES`` with
    ``validation``); None for a dataset the registry lacks (validate says so)."""
    if dataset not in data_mod.DATASETS:
        return None
    size = data_mod.DATASETS.get(dataset).train_size - (VALIDATION_IMAGES if validation else 0)
    return size if train_size is None else min(train_size, size)


def validate(cfg: StudyConfig) -> None:
    """Raise ConfigError with a one-line message for the first bad setting."""
    t = cfg.train
    if not cfg.inits:
        raise ConfigError("--inits needs at least one init")
    for spec in cfg.inits:
        try:
            if cfg.start is not None and is_pretrained(spec):
                head = pretrained_head(spec)
                if head is not None:
                    init.parse_spec(head)
                continue
            name, _ = init.parse_spec(spec)
            init.init_params(name)  # raises for an unknown name
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if isinstance(cfg.bias_init, str):
        try:
            init.bias_distribution(cfg.bias_init)
        except ValueError as e:
            raise ConfigError(f"--bias-init: {e}") from None
    checks = [
        (cfg.activation in ACTIVATIONS,
         f"unknown activation {cfg.activation!r}; choose from: {', '.join(ACTIVATIONS.names())}"),
        (cfg.dataset in data_mod.dataset_names(),
         f"unknown dataset {cfg.dataset!r}; choose from: {', '.join(data_mod.dataset_names())}"),
        (cfg.pool in ("avg", "max"), f"unknown pool {cfg.pool!r}; choose from: avg, max"),
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         f"unknown device {cfg.device!r}; choose from: auto, cpu, cuda"),
        (cfg.seeds >= 1, f"--seeds must be >= 1, got {cfg.seeds}"),
        (cfg.width is None or cfg.width >= 1, f"--width must be >= 1, got {cfg.width}"),
        (cfg.depth is None or cfg.depth >= 1, f"--depth must be >= 1, got {cfg.depth}"),
        (cfg.seeds_per_stack >= 0, f"--seeds-per-stack must be >= 0, got {cfg.seeds_per_stack}"),
        (cfg.workers >= 0, f"--workers must be >= 0, got {cfg.workers}"),
        (isinstance(cfg.bias_init, str) or math.isfinite(cfg.bias_init),
         f"--bias-init must be a finite number or a distribution, got {cfg.bias_init}"),
        (math.isfinite(t.lr) and t.lr > 0, f"--lr must be > 0, got {t.lr}"),
        (t.batch_size >= 1, f"--batch-size must be >= 1, got {t.batch_size}"),
        (t.epochs >= 1, f"--epochs must be >= 1, got {t.epochs}"),
        (t.train_size is None or t.train_size >= 1, f"--train-size must be >= 1, got {t.train_size}"),
        (t.record_every >= 1, f"--record-every must be >= 1, got {t.record_every}"),
        # the first and the last step; the engine's 0 (every hist_every steps) has no flag to set that
        # interval, so a 0 here would silently mean "every 300 steps"
        (t.hist_moments >= 2, f"--hist-moments must be >= 2 (the first and the last step), got {t.hist_moments}"),
        (t.optimizer in engine.OPTIMIZERS,
         f"unknown optimizer {t.optimizer!r}; choose from: {', '.join(engine.OPTIMIZERS)}"),
        (t.schedule in engine.SCHEDULES,
         f"unknown schedule {t.schedule!r}; choose from: {', '.join(engine.SCHEDULES)}"),
        (0 <= t.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {t.label_smoothing}"),
        (t.weight_decay >= 0, f"--weight-decay must be >= 0, got {t.weight_decay}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    check_seeds(cfg.seeds, cfg.first_seed, len(cfg.inits), f"{len(cfg.inits)} inits")
    if cfg.frozen and t.weight_decay:
        raise ConfigError("frozen layers need weight decay 0 (decay would move them)")
    try:
        name, _ = model_spec(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        with torch.device("meta"):       # the constructor's own checks, without allocating weights
            models.build(name, **model_options(cfg))
    except ValueError as e:
        raise ConfigError(f"--model {cfg.model}: {e}") from None
    shape = image_shape(cfg.dataset)
    if shape != LENET_INPUT and name == "lenet5":
        raise ConfigError(f"--model lenet5 takes 1x28x28 images; {cfg.dataset} is {'x'.join(map(str, shape))}: "
                          f"use --model three_layer_convnet, two_layer_fc or mlp")
    size = data_mod.DATASETS.get(cfg.dataset).train_size if cfg.dataset in data_mod.DATASETS else None
    if t.train_size is not None and size is not None and t.train_size > size:
        raise ConfigError(f"--train-size {t.train_size} is more than the {size:,} training images of "
                          f"{cfg.dataset}")
    n_images = train_images(cfg.dataset, t.train_size, cfg.validation)
    if n_images is not None and t.batch_size > n_images:
        raise ConfigError(f"--batch-size {t.batch_size} is more than the {n_images:,} training images "
                          + (f"of --train-size {t.train_size}" if t.train_size is not None and
                             t.train_size <= n_images else f"of {cfg.dataset}"
                             + (" less the validation split" if cfg.validation else ""))
                          + f": at most {n_images:,}")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    try:
        parametrization_table(cfg)
    except ValueError as e:
        raise ConfigError(f"--parametrization {cfg.parametrization}: {e}") from None
    _check_model_inits(cfg)


def parametrization_table(cfg: StudyConfig) -> Optional[Dict[str, param.Scaling]]:
    """{parameter: Scaling} of ``cfg.parametrization`` for the study's model (None for SP: nothing to
    apply). Which dimensions scale with width comes from the model built on the meta device at
    ``base_width`` and at twice that (``mup``'s base and delta models); a model needs a width setting
    (``width_option``: the mlp's ``width``, two_layer_fc's ``hidden``) and forward multipliers. A
    ValueError says what does not fit."""
    name, options = param.parse(cfg.parametrization)
    if name == "sp":
        return None
    model_name, _ = model_spec(cfg)
    kwargs = model_options(cfg)
    with torch.device("meta"):
        model = models.build(model_name, **kwargs)
        key = getattr(model, "width_option", None)
        if key is None or not isinstance(getattr(model, "multipliers", None), dict):
            supported = [n for n in models.MODELS.names() if getattr(models.MODELS.get(n), "width_option", None)]
            raise ValueError(f"{model_name} has no width setting to scale (supported: {', '.join(supported)})")
        base = models.build(model_name, **{**kwargs, key: options["base_width"]})
        delta = models.build(model_name, **{**kwargs, key: 2 * options["base_width"]})
    shapes = lambda m: {n: tuple(p.shape) for n, p in m.named_parameters()}
    return param.scalings(cfg.parametrization, shapes(model), shapes(base), shapes(delta))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_generator(seed: int, offset: int = 10_000) -> torch.Generator:
    """The generator a run's weights are drawn from: same seed, same draw, whatever the init order
    (``offset``: a study config's ``draw_offset``; transfer's pretraining draws from its own)."""
    return torch.Generator().manual_seed(offset + seed)


def build_initialized(cfg: StudyConfig, spec: str, seed: int,
                      x_train: Optional[torch.Tensor] = None, start: Optional[dict] = None) -> torch.nn.Module:
    return build_and_initialize(cfg, spec, seed, x_train, start)[0]


# --- a run that starts from trained weights (initlab transfer) --------------------------------------
PRETRAINED = "pretrained"   # the init of a run that starts from the weights its config's ``start`` names:
                            # ``pretrained`` copies every weight, ``pretrained:head=kaiming`` then
                            # redraws the output layer with that init (the run seed's draw, bias 0)


def is_pretrained(spec: str) -> bool:
    return spec.split(":", 1)[0] == PRETRAINED


def pretrained_head(spec: str) -> Optional[str]:
    """The init that redraws the output layer of a ``pretrained:head=INIT`` spec (None: none)."""
    _, _, params = spec.partition(":")
    if not params:
        return None
    key, _, value = params.partition("=")
    if key != "head" or not value:
        raise ValueError(f"{spec!r}: {PRETRAINED} takes one parameter, head=INIT (the output layer's redraw)")
    return value


def output_layer(model: torch.nn.Module) -> str:
    """Name of the output layer (the last Conv/Linear): what ``pretrained:head=INIT`` redraws."""
    return models.weight_layers(model)[-1][0]


def _start_from(cfg: StudyConfig, model: torch.nn.Module, spec: str, seed: int, start: Optional[dict]) -> dict:
    """Load ``start`` (a state dict) into ``model``; with ``head=INIT``, redraw the output layer as the
    ``INIT`` scratch model of ``seed`` draws it. Returns the init's info."""
    if start is None:
        raise ValueError(f"init {spec!r} needs the weights its config's start names ({cfg.start}), "
                         f"and none were given")
    model.load_state_dict(start)
    head = pretrained_head(spec)
    if head is not None:
        fresh = models.build(model_spec(cfg)[0], **model_options(cfg))
        init.initialize(fresh, head, generator=init_generator(seed, cfg.draw_offset), activation=cfg.activation,
                        bias=cfg.bias_init)
        prefix = output_layer(model) + "."
        with torch.no_grad():
            drawn = dict(fresh.named_parameters())
            for name, p in model.named_parameters():
                if name.startswith(prefix):
                    p.copy_(drawn[name])
    return {"init": spec}


# --- data-dependent (model-level) inits get real training images -----------------------------------
MODEL_INIT_IMAGES = 256  # lsuv's batch (Mishkin & Matas 2015 use one mini-batch); an init with an
                         # ``images`` parameter (dbn) gets that many instead


def init_images(cfg: StudyConfig, spec: str, seed: int, x_train: torch.Tensor) -> Optional[torch.Tensor]:
    """The images a model-level init of ``spec`` sees (None for per-weight inits): the first n of the
    run seed's data order over the training pool (the ``--train-size`` subset), on the CPU."""
    name, params = init.parse_spec(spec)
    if name not in init.MODEL_INITIALIZERS:
        return None
    n = int({**init.init_params(name), **params}.get("images", MODEL_INIT_IMAGES))
    order = engine.data_order(len(x_train), seed, 1, cfg.train.train_size)[:n]
    return x_train[order.to(x_train.device)].cpu()


def build_and_initialize(cfg: StudyConfig, spec: str, seed: int,
                         x_train: Optional[torch.Tensor] = None, start: Optional[dict] = None):
    """(model, info): ``init.initialize``'s info plus ``init_seconds`` (wall time of the init, which for
    ``dbn`` includes RBM pre-training). Model-level inits need ``x_train`` (float training images); a
    ``pretrained`` init (with a config's ``start``) the state dict ``start``."""
    import time

    model = models.build(model_spec(cfg)[0], **model_options(cfg))
    t0 = time.perf_counter()
    if cfg.start is not None and is_pretrained(spec):
        info = _start_from(cfg, model, spec, seed, start)
        info["init_seconds"] = time.perf_counter() - t0
        return model, info
    batch = None if x_train is None else init_images(cfg, spec, seed, x_train)
    info = init.initialize(model, spec, generator=init_generator(seed, cfg.draw_offset), activation=cfg.activation,
                           bias=cfg.bias_init, data=batch)
    table = parametrization_table(cfg)
    if table is not None:        # composes with the init: rescales what it drew (see init.parametrization)
        param.apply(model, table)
    info["init_seconds"] = time.perf_counter() - t0
    return model, info


def checkpoint(cfg: StudyConfig, spec: str, seed: int, state: dict, test_acc: float) -> dict:
    """A trained run as a checkpoint (what ``torch.save`` writes; ``initlab transfer --from-checkpoint``
    reads it): its state dict, the model and the options that build it, the dataset it trained on, its
    init, seed and training settings, and its test accuracy."""
    return {"state_dict": state, "model": model_spec(cfg)[0], "model_options": model_options(cfg),
            "dataset": cfg.dataset, "config": {"init": spec, "seed": seed, "epochs": cfg.train.epochs,
                                               "train": asdict(cfg.train)},
            "test_acc": test_acc}


_INFO_KEYS = ("init", "name", "params", "layers", "bias", "init_seconds")


def init_columns(info: dict) -> dict:
    """runs.csv columns from an init's info: ``init_seconds``, and ``init_info`` (compact JSON of what a
    model-level init reported: lsuv_iters / lsuv_var, dbn's pretrain_seconds and RBM errors)."""
    extra = {k: v for k, v in info.items() if k not in _INFO_KEYS}
    return {"init_seconds": info["init_seconds"],
            "init_info": json.dumps(extra, separators=(",", ":")) if extra else None}


def _check_model_inits(cfg: StudyConfig) -> None:
    """A model-level init that cannot fill this model (dbn on a conv net) fails here, before training."""
    for spec in cfg.inits:
        if cfg.start is not None and is_pretrained(spec):
            continue
        name = init.parse_spec(spec)[0]
        check = getattr(init.MODEL_INITIALIZERS.get(name), "check_model", None) \
            if name in init.MODEL_INITIALIZERS else None
        if check is not None:
            try:
                check(models.build(model_spec(cfg)[0], **model_options(cfg)))
            except ValueError as e:
                raise ConfigError(f"--inits {spec}: {e}") from None


LENET_INPUT = (1, 28, 28)   # (C, H, W) of LeNet-5's images, and every model's default


def image_shape(dataset: str) -> Tuple[int, int, int]:
    """(C, H, W) of a dataset's images, from the registry (LeNet-5's for a name it lacks: validate says so)."""
    return data_mod.DATASETS.get(dataset).image_shape if dataset in data_mod.DATASETS else LENET_INPUT


def model_spec(cfg: StudyConfig) -> Tuple[str, Dict]:
    """(model name, its settings) from ``--model name:key=value`` and the flags that shape a model
    (``--width``, ``--depth``, ``--conv`` for the mlp; ``--pool``, ``--c3-table`` for LeNet-5). A
    setting given both ways must agree; a flag the model does not have is refused."""
    name, options = models.parse_model(cfg.model)
    flags = {"width": cfg.width, "depth": cfg.depth, "conv": cfg.conv or None,
             "pool": None if cfg.pool == "avg" else cfg.pool, "c3_table": cfg.c3_table or None}
    valid = models.settable_options(name)
    for key, value in flags.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key not in valid:
            raise ValueError(f"{flag} does not apply: {name} has no {key} (its settings: "
                             f"{', '.join(valid) or 'none'})")
        if options.setdefault(key, value) != value:
            raise ValueError(f"{key} given twice: {options[key]} in --model, {value} by {flag}")
    return name, options


def model_options(cfg: StudyConfig) -> Dict:
    """Keyword arguments that build the study's model: its settings, the activation and the dataset's
    image shape where it differs from 1x28x28."""
    name, options = model_spec(cfg)
    options["activation"] = cfg.activation
    c, h, _ = image_shape(cfg.dataset)
    if name != "lenet5" and (c, h) != LENET_INPUT[:2]:
        options.update(in_channels=c, image_size=h)
    return options


@dataclass
class StudyResult:
    runs: List[dict]
    curves: List[dict]
    layers: List[dict]
    hists: List[dict]
    interrupted: bool = False
    majority_share: float = math.nan   # share of the most common test label
    majority_label: int = -1
    weights: Dict[Tuple[str, int], dict] = field(default_factory=dict)   # (init, seed) -> trained state
                                       # dict, with ``keep_weights`` (not for an interrupted stack)


def steps_to(curve: List[dict], threshold: float, n_images: int) -> Optional[int]:
    """First recorded step at which at least ``threshold`` of the ``n_images`` held-out images were
    classified right (None if never). Counted, not compared as ratios: 450 of 500 reaches 90 % although
    450/500 in float32 is 0.8999999762."""
    need = math.ceil(threshold * n_images - 1e-9)
    for row in curve:
        if round(row["heldout_acc"] * n_images) >= need:
            return row["step"]
    return None


def balance(shapes: List[Tuple[int, int]], workers: int) -> List[Tuple[int, slice, slice]]:
    """Cut blocks of (S_k seeds x I_k inits) runs into rectangles that ``workers`` processes, each
    taking the next rectangle when it is free, finish close together. Blocks are kept whole when
    handing them out largest first already does that; otherwise the runs are dealt in seed-major
    order into ``workers`` equal shares, and each share's part of a block becomes at most three
    rectangles (a partial seed row, whole rows, a partial row). 3 seeds x 5 inits for 2 workers:
    seed 0 x 5, seed 2 x 5, seed 1 x 3, seed 1 x 2 -- 8 and 7 runs, where halving the inits gave 9
    and 6. Returns (block index, seed slice, init slice), largest first."""
    whole = [(k, slice(0, S), slice(0, I)) for k, (S, I) in enumerate(shapes)]
    sizes = [S * I for S, I in shapes]
    total = sum(sizes)
    if workers <= 1 or not total:
        return whole
    target = -(-total // workers)
    loads = [0] * workers
    for n in sorted(sizes, reverse=True):                    # largest first, to the least loaded
        loads[loads.index(min(loads))] += n
    if max(loads) <= target:
        return sorted(whole, key=lambda p: -sizes[p[0]])
    pieces = []
    start = 0                                                # global index of the block's first run
    for k, (S, I) in enumerate(shapes):
        a = start
        while a < start + S * I:
            b = min(start + S * I, (a // target + 1) * target)   # to the end of this share
            lo, hi = a - start, b - start                        # runs [lo, hi) of block k
            r0, r1 = lo // I, (hi - 1) // I
            if r0 == r1:
                pieces.append((k, slice(r0, r0 + 1), slice(lo % I, (hi - 1) % I + 1)))
            else:
                first = r0 + 1 if lo % I else r0                 # first whole row
                last = r1 if hi % I else r1 + 1                  # one past the last whole row
                if lo % I:
                    pieces.append((k, slice(r0, r0 + 1), slice(lo % I, I)))
                if last > first:
                    pieces.append((k, slice(first, last), slice(0, I)))
                if hi % I:
                    pieces.append((k, slice(r1, r1 + 1), slice(0, hi % I)))
            a = b
        start += S * I
    return sorted(pieces, key=lambda p: -(p[1].stop - p[1].start) * (p[2].stop - p[2].start))


def plan_blocks(seeds: List[int], inits: List[str], workers: int, seeds_per_stack: int = 0):
    """Split the seeds x inits grid into rectangular stacks (seed list, init list): first by
    ``seeds_per_stack``, then with :func:`balance` so that ``workers`` processes finish together."""
    per = seeds_per_stack or len(seeds)
    blocks = [seeds[i:i + per] for i in range(0, len(seeds), per)]
    return [(blocks[k][rows], list(inits)[cols])
            for k, rows, cols in balance([(len(b), len(inits)) for b in blocks], workers)]


def default_workers(device: torch.device) -> int:
    """One process per core on the CPU (each single-threaded: small convolutions scale poorly across
    threads, and a busy machine makes OpenMP threads wait on each other), one process for a GPU."""
    return 1 if device.type == "cuda" else max(1, os.cpu_count() or 1)


def processes(workers: int, n_models: int, device: torch.device) -> int:
    """Training processes for ``n_models`` runs: ``workers`` (0: :func:`default_workers`), but one --
    this process -- when there are fewer models than that. Trained here, a lone stack gets every core
    other processes leave idle (``engine.ThreadGovernor``), where a single-threaded worker would leave
    the rest of them idle."""
    workers = workers or default_workers(device)
    return 1 if n_models < workers else workers


def _train_block(cfg: StudyConfig, seeds: List[int], inits: List[str], ds, device, report,
                 starts: Optional[Dict[int, dict]] = None):
    """Build, initialize and train one stack; returns (StackResult, [init info per run], {(init, seed):
    trained state dict} with ``cfg.keep_weights``)."""
    data = engine.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                          cfg.train, device, mean=ds.mean, std=ds.std)
    built = [[build_and_initialize(cfg, spec, s, data.x_train, (starts or {}).get(s)) for spec in inits]
             for s in seeds]
    res = engine.train_stack([[m for m, _ in row] for row in built], seeds, data, cfg.train,
                             progress=report, frozen=cfg.frozen)
    weights = {} if not cfg.keep_weights or res.interrupted else {
        (spec, s): {k: v.detach().cpu().clone() for k, v in built[a][b][0].state_dict().items()}
        for a, s in enumerate(seeds) for b, spec in enumerate(inits)}
    return res, [info for row in built for _, info in row], weights


def _train_item(block, steps, cfg: StudyConfig, ds, device, starts=None):
    """A pool worker's item (``initlab.engine.pool``): one stack, block = (seeds, inits)."""
    seeds, inits = block
    return _train_block(cfg, seeds, inits, ds, device, steps, starts)


def run_study(cfg: StudyConfig, dataset=None, progress=True, starts: Optional[Dict[int, dict]] = None) -> StudyResult:
    """Train every (seed, init) of ``cfg``, as stacks spread over ``cfg.workers`` processes (0 = one
    per core on the CPU, one on a GPU). Ctrl-C keeps every finished stack and what the interrupted ones
    recorded so far. ``progress``: show a bar (True), nothing (False), or a callable given the number
    of model-steps just done (of steps x seeds x inits in all; a sweep worker reports to its driver).
    ``starts``: {seed: state dict} for the ``pretrained`` inits of a config with a ``start``."""
    from tqdm import tqdm

    validate(cfg)
    device = resolve_device(cfg.device)
    ds = dataset if dataset is not None else data_mod.load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.validation:
        ds = validation_split(ds)
    counts = torch.bincount(ds.test_labels, minlength=10)
    seeds = cfg.seed_list
    workers = processes(cfg.workers, len(seeds) * len(cfg.inits), device)
    blocks = plan_blocks(seeds, list(cfg.inits), workers, cfg.seeds_per_stack)
    workers = min(workers, len(blocks))
    n_images = min(cfg.train.train_size or len(ds.train_images), len(ds.train_images))
    steps = engine.steps_for(n_images, cfg.train)
    result = StudyResult([], [], [], [], majority_share=float(counts.max()) / len(ds.test_labels),
                         majority_label=int(counts.argmax()))
    total = sum(steps * len(b[0]) * len(b[1]) for b in blocks)      # model-steps
    # no bars at all when the caller counts the steps (a forked worker must not take tqdm's lock,
    # which its parent's monitor thread may have held at the fork)
    show = bool(progress) and not callable(progress)
    overall = tqdm(total=total, desc=f"study {len(cfg.inits)} inits x {len(seeds)} seeds",
                   unit=" model-steps", unit_scale=True, dynamic_ncols=True, leave=True,
                   mininterval=0.2 if sys.stderr.isatty() else 15.0) if show else None
    bars = [tqdm(total=steps, desc=f"  stack {k + 1}/{len(blocks)}: seeds {','.join(map(str, bs))} x "
                 f"{len(bi)} inits", unit="step", leave=False, position=k + 1, dynamic_ncols=True,
                 disable=len(blocks) == 1 or not sys.stderr.isatty())
            for k, (bs, bi) in enumerate(blocks)] if show else []

    def bumper(k):   # steps of block k -> its bar, and model-steps for the overall bar or callable
        width = len(blocks[k][0]) * len(blocks[k][1])

        def bump(n: int) -> None:
            if callable(progress):
                progress(n * width)
            elif show:
                bars[k].update(n)
                overall.update(n * width)
        return bump

    done = {}
    if workers == 1:
        for k, (bs, bi) in enumerate(blocks):
            done[k] = _train_block(cfg, bs, bi, ds, device, bumper(k), starts)
            if done[k][0].interrupted:
                break
    else:
        bumps = [bumper(k) for k in range(len(blocks))]

        def on_result(k: int, payload, error) -> None:
            if error:
                raise RuntimeError(f"training worker failed: {error}")
            done[k] = payload

        # Ctrl-C reaches the workers too: each keeps what its stack recorded so far
        pool.run(_train_item, blocks, workers, shared=(cfg, ds, device, starts),
                 on_steps=lambda k, n: bumps[k](n), on_result=on_result, keep_interrupted=True)
    result.interrupted = len(done) < len(blocks) or any(res.interrupted for res, _, _ in done.values())
    for k in sorted(done):
        res, infos, weights = done[k]
        result.weights.update(weights)
        seeds_k, inits_k = blocks[k]
        n_before = len(result.runs)
        _collect(result, cfg, seeds_k, res, inits_k)
        for row, info in zip(result.runs[n_before:], infos):
            row.update(init_columns(info))
    for bar in bars:
        bar.close()
    if overall is not None:
        overall.close()
    return result


def _collect(result: StudyResult, cfg: StudyConfig, chunk: List[int], res: engine.StackResult,
             inits: List[str]) -> None:
    I = len(inits)
    offset = len(result.runs)
    keys = {}
    for s_idx, seed in enumerate(chunk):
        for i_idx, spec in enumerate(inits):
            keys[s_idx * I + i_idx] = {"init": spec, "seed": seed}
    for table, rows in (("curves", res.records.curves), ("layers", res.records.layers),
                        ("hists", res.records.hists)):
        getattr(result, table).extend({**keys[r["run"]], "run": offset + r["run"],
                                       **{k: v for k, v in r.items() if k != "run"}} for r in rows)
    share = res.wall_seconds / (len(chunk) * I)
    for r, key in keys.items():
        s_idx, i_idx = divmod(r, I)
        curve = [c for c in res.records.curves if c["run"] == r]
        dstep = int(res.diverged_step[s_idx, i_idx])
        first = curve[0] if curve else {}
        result.runs.append({
            "run": offset + r, **key, "activation": cfg.activation, "model": cfg.model,
            "dataset": cfg.dataset, "bias_init": cfg.bias_init,
            "test_acc": float(res.test_acc[s_idx, i_idx]),
            "test_loss": float(res.test_loss[s_idx, i_idx]),
            "initial_loss": first.get("heldout_loss", math.nan),
            "steps": res.steps, "steps_to_90": steps_to(curve, 0.90, cfg.train.heldout_size),
            "steps_to_97": steps_to(curve, 0.97, cfg.train.heldout_size),
            "train_seconds": share, "stack_seconds": res.wall_seconds, "stack_size": len(chunk) * I,
            "diverged": dstep >= 0, "diverged_step": dstep if dstep >= 0 else None,
            "interrupted": res.interrupted,
        })


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def config_dict(cfg: StudyConfig) -> dict:
    d = asdict(cfg)
    d["seed_list"] = cfg.seed_list
    return d


def _reindex(row: dict, run: int, init: str, seed: int) -> dict:
    """The row with its run index and init/seed, keys in their original order."""
    fix = {"run": run, "init": init, "seed": seed}
    return {k: fix.get(k, v) for k, v in row.items()}


def assemble_tables(runs: List[dict], label=lambda r: r["init"], extra=lambda r: {}) -> Dict[str, List[dict]]:
    """runs / curves / layers / histograms tables of finished runs (dicts with ``row``, ``tables`` --
    their record rows --, ``init`` and ``seed``), numbered in the given order. Record rows are sorted
    by (step, layer, run): the order a single stack of all runs writes."""
    tables: Dict[str, List[dict]] = {"runs": [], "curves": [], "layers": [], "histograms": []}
    layer_order: Dict[str, int] = {}
    for k, r in enumerate(runs):
        row = _reindex(r["row"], k, label(r), r["seed"])
        row.update(extra(r))
        tables["runs"].append(row)
        for name, rows in r["tables"].items():
            for x in rows:
                tables[name].append(_reindex(x, k, label(r), r["seed"]))
                if "layer" in x:
                    layer_order.setdefault(x["layer"], len(layer_order))
    tables["curves"].sort(key=lambda x: (x["step"], x["run"]))
    for name in ("layers", "histograms"):
        tables[name].sort(key=lambda x: (x["step"], layer_order.get(x.get("layer"), 0), x["run"]))
    return tables


def config_from_dict(d: dict) -> StudyConfig:
    """The StudyConfig of a stored ``config_dict`` (keys it does not know, e.g. ``seed_list``, ignored)."""
    train_fields = {f.name for f in dataclasses.fields(engine.TrainConfig)}
    study_fields = {f.name for f in dataclasses.fields(StudyConfig)} - {"train"}
    return StudyConfig(**{k: v for k, v in d.items() if k in study_fields},
                       train=engine.TrainConfig(**{k: v for k, v in d.get("train", {}).items()
                                                   if k in train_fields}))


def write_tables(out: Path, cfg: StudyConfig, result: StudyResult, extra: Optional[dict] = None,
                 experiment: str = "study") -> None:
    """config.json, meta.json, curves.csv, layers.csv, histograms.csv, runs.csv -- each atomically."""
    meta = {"interrupted": result.interrupted, "majority_share": result.majority_share,
            "majority_label": result.majority_label, **(extra or {})}
    files.write_result(out, experiment, config_dict(cfg),
                       {"curves": result.curves, "layers": result.layers, "histograms": result.hists,
                        "runs": result.runs}, meta)
