"""The LAB03-1 study: every init x every seed, trained by the engine, written as tidy tables.

``run_study(cfg)`` builds one model per (seed, init), initializes it from a generator seeded by the run's
seed, trains all of them as stacks (``cfg.seeds_per_stack`` seeds at a time, all inits of a seed share
its data order) and returns a ``StudyResult`` whose tables ``study_tables.write_tables`` saves as CSV. The report is
made from those files alone (``initlab.report``), so it can be rebuilt at any time.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from initlab import data as data_mod
from initlab import (
    engine,
    init,
    models,
)
from initlab.activations import ACTIVATIONS
from initlab.experiments.limits import check_seeds
from initlab.init import parametrization as param
from initlab.options import UsageError, flag

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
                                    # (``data.validation_split``): for choosing a recipe without the test set
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


ConfigError = UsageError   # a bad setting, found before any training starts: one line, exit code 2


def train_images(dataset: str, train_size: Optional[int], validation: bool = False) -> Optional[int]:
    """How many training images a run of ``dataset`` sees, known from the registry without loading
    (``train_size``, at most the dataset's; less the held-out ``VALIDATION_IMAGES`` with
    ``validation``); None for a dataset the registry lacks (validate says so)."""
    if dataset not in data_mod.DATASETS:
        return None
    size = data_mod.DATASETS.get(dataset).train_size - (data_mod.VALIDATION_IMAGES if validation else 0)
    return size if train_size is None else min(train_size, size)


def check_bias_init(bias_init: Union[float, str]) -> None:
    """A ConfigError (one line) unless ``bias_init`` is a finite constant or a bias distribution."""
    if isinstance(bias_init, str):
        try:
            init.bias_distribution(bias_init)
        except ValueError as e:
            raise ConfigError(f"{flag('bias_init')}: {e}") from None
    elif not math.isfinite(bias_init):
        raise ConfigError(f"{flag('bias_init')} must be a finite number or a distribution, got {bias_init}")


def validate(cfg: StudyConfig) -> None:
    """Raise ConfigError with a one-line message for the first bad setting."""
    t = cfg.train
    if not cfg.inits:
        raise ConfigError(f"{flag('inits')} needs at least one init")
    for spec in cfg.inits:
        try:
            if starts_from_weights(cfg, spec):
                head = pretrained_head(spec)
                if head is not None:
                    init.parse_spec(head)
                continue
            name, _ = init.parse_spec(spec)
            init.init_params(name)  # raises for an unknown name
        except ValueError as e:
            raise ConfigError(str(e)) from None
    check_bias_init(cfg.bias_init)
    checks = [
        (cfg.activation in ACTIVATIONS,
         f"unknown activation {cfg.activation!r}; choose from: {', '.join(ACTIVATIONS.names())}"),
        (cfg.dataset in data_mod.dataset_names(),
         f"unknown dataset {cfg.dataset!r}; choose from: {', '.join(data_mod.dataset_names())}"),
        (cfg.pool in ("avg", "max"), f"unknown pool {cfg.pool!r}; choose from: avg, max"),
        (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
         f"unknown device {cfg.device!r}; choose from: auto, cpu, cuda"),
        (cfg.seeds >= 1, f"{flag('seeds')} must be >= 1, got {cfg.seeds}"),
        (cfg.width is None or cfg.width >= 1, f"{flag('width')} must be >= 1, got {cfg.width}"),
        (cfg.depth is None or cfg.depth >= 1, f"{flag('depth')} must be >= 1, got {cfg.depth}"),
        (cfg.seeds_per_stack >= 0, f"{flag('seeds_per_stack')} must be >= 0, got {cfg.seeds_per_stack}"),
        (cfg.workers >= 0, f"{flag('workers')} must be >= 0, got {cfg.workers}"),
        (math.isfinite(t.lr) and t.lr > 0, f"{flag('lr')} must be > 0, got {t.lr}"),
        (t.batch_size >= 1, f"{flag('batch_size')} must be >= 1, got {t.batch_size}"),
        (t.epochs >= 1, f"{flag('epochs')} must be >= 1, got {t.epochs}"),
        (t.train_size is None or t.train_size >= 1, f"{flag('train_size')} must be >= 1, got {t.train_size}"),
        (t.record_every >= 1, f"{flag('record_every')} must be >= 1, got {t.record_every}"),
        # the first and the last step; the engine's 0 (every hist_every steps) has no flag to set that
        # interval, so a 0 here would silently mean "every 300 steps"
        (t.hist_moments >= 2,
         f"{flag('hist_moments')} must be >= 2 (the first and the last step), got {t.hist_moments}"),
        (t.optimizer in engine.OPTIMIZERS,
         f"unknown optimizer {t.optimizer!r}; choose from: {', '.join(engine.OPTIMIZERS)}"),
        (t.schedule in engine.SCHEDULES,
         f"unknown schedule {t.schedule!r}; choose from: {', '.join(engine.SCHEDULES)}"),
        (0 <= t.label_smoothing < 1, f"{flag('label_smoothing')} must be in [0, 1), got {t.label_smoothing}"),
        (t.weight_decay >= 0, f"{flag('weight_decay')} must be >= 0, got {t.weight_decay}"),
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
        raise ConfigError(f"{flag('model', cfg.model)}: {e}") from None
    shape = image_shape(cfg.dataset)
    if shape != LENET_INPUT and name == "lenet5":
        raise ConfigError(f"{flag('model')} lenet5 takes 1x28x28 images; {cfg.dataset} is {'x'.join(map(str, shape))}: "
                          f"use {flag('model')} three_layer_convnet, two_layer_fc or mlp")
    size = data_mod.DATASETS.get(cfg.dataset).train_size if cfg.dataset in data_mod.DATASETS else None
    if t.train_size is not None and size is not None and t.train_size > size:
        raise ConfigError(f"{flag('train_size', t.train_size)} is more than the {size:,} training images of "
                          f"{cfg.dataset}")
    n_images = train_images(cfg.dataset, t.train_size, cfg.validation)
    if n_images is not None and t.batch_size > n_images:
        raise ConfigError(f"{flag('batch_size', t.batch_size)} is more than the {n_images:,} training images "
                          + (f"of {flag('train_size', t.train_size)}" if t.train_size is not None and
                             t.train_size <= n_images else f"of {cfg.dataset}"
                             + (" less the validation split" if cfg.validation else ""))
                          + f": at most {n_images:,}")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{flag('device')} cuda asked for, but torch sees no CUDA device; use {flag('device')} cpu")
    try:
        parametrization_table(cfg)
    except ValueError as e:
        raise ConfigError(f"{flag('parametrization', cfg.parametrization)}: {e}") from None
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


# --- a run that starts from trained weights (initlab transfer) --------------------------------------
PRETRAINED = "pretrained"   # the init of a run that starts from the weights its config's ``start`` names:
                            # ``pretrained`` copies every weight, ``pretrained:head=kaiming`` then
                            # redraws the output layer with that init (the run seed's draw, bias 0)


def is_pretrained(spec: str) -> bool:
    return spec.split(":", 1)[0] == PRETRAINED


def starts_from_weights(cfg: StudyConfig, spec: str) -> bool:
    """True for a ``pretrained`` init of a config that names its ``start``: no draw, the weights given."""
    return cfg.start is not None and is_pretrained(spec)


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
    if starts_from_weights(cfg, spec):
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
        if starts_from_weights(cfg, spec):
            continue
        name = init.parse_spec(spec)[0]
        check = getattr(init.MODEL_INITIALIZERS.get(name), "check_model", None) \
            if name in init.MODEL_INITIALIZERS else None
        if check is not None:
            try:
                check(models.build(model_spec(cfg)[0], **model_options(cfg)))
            except ValueError as e:
                raise ConfigError(f"{flag('inits', spec)}: {e}") from None


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
        if key not in valid:
            raise ValueError(f"{flag(key)} does not apply: {name} has no {key} (its settings: "
                             f"{', '.join(valid) or 'none'})")
        if options.setdefault(key, value) != value:
            raise ValueError(f"{key} given twice: {options[key]} in {flag('model')}, {value} by {flag(key)}")
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


def _train_block(cfg: StudyConfig, seeds: List[int], ds, device, report,
                 starts: Optional[Dict[int, dict]] = None):
    """Build, initialize and train one stack (``seeds`` x every init); returns (StackResult, [init info
    per run], {(init, seed): trained state dict} with ``cfg.keep_weights``)."""
    data = engine.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                          cfg.train, device, mean=ds.mean, std=ds.std)
    built = [[build_and_initialize(cfg, spec, s, data.x_train, (starts or {}).get(s)) for spec in cfg.inits]
             for s in seeds]
    res = engine.train_stack([[m for m, _ in row] for row in built], seeds, data, cfg.train,
                             progress=report, frozen=cfg.frozen)
    weights = {} if not cfg.keep_weights or res.interrupted else {
        (spec, s): {k: v.detach().cpu().clone() for k, v in built[a][b][0].state_dict().items()}
        for a, s in enumerate(seeds) for b, spec in enumerate(cfg.inits)}
    return res, [info for row in built for _, info in row], weights


def run_study(cfg: StudyConfig, dataset=None, progress: Optional[Callable[[int], None]] = None,
              starts: Optional[Dict[int, dict]] = None) -> StudyResult:
    """Train every (seed, init) of ``cfg`` in this process, in stacks of ``cfg.seeds_per_stack`` seeds
    (0: all) x every init: what one worker of the runner (``initlab.runs``) does with one task; the
    runner spreads a study over workers, Ray, the run store. Ctrl-C keeps every finished stack and what
    the interrupted one recorded so far. ``progress``: None, or a callable given the number of
    model-steps just done. ``starts``: {seed: state dict} for the ``pretrained`` inits of a config with
    a ``start``."""
    validate(cfg)
    device = resolve_device(cfg.device)
    ds = dataset if dataset is not None else data_mod.load_dataset(cfg.dataset, cfg.data_dir)
    if cfg.validation:
        ds = data_mod.validation_split(ds)
    counts = torch.bincount(ds.test_labels, minlength=10)
    seeds = cfg.seed_list
    per = cfg.seeds_per_stack or len(seeds)
    blocks = [seeds[i:i + per] for i in range(0, len(seeds), per)]
    result = StudyResult([], [], [], [], majority_share=float(counts.max()) / len(ds.test_labels),
                         majority_label=int(counts.argmax()))
    for block in blocks:
        width = len(block) * len(cfg.inits)
        res, infos, weights = _train_block(cfg, block, ds, device,
                                           (lambda n, w=width: progress(n * w)) if callable(progress) else None,
                                           starts)
        result.weights.update(weights)
        n_before = len(result.runs)
        _collect(result, cfg, block, res, list(cfg.inits))
        for row, info in zip(result.runs[n_before:], infos):
            row.update(init_columns(info))
        if res.interrupted:
            result.interrupted = True
            break
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
