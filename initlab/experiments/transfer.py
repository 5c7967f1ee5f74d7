"""Transfer learning as an initialization: pretrain on one dataset, start another from those weights.

``initlab transfer --from fashion_mnist --to mnist`` (or the reverse):

1. **Pretrain** the model (LeNet-5 by default) on the *source* training set with ``kaiming`` init,
   one model per seed (all seeds in one stack), for ``--pretrain-epochs`` epochs; each run's weights
   are kept with its records as a checkpoint, ``records/<hash>/weights.pt`` (``torch.save({"state_dict",
   "config", "model", "dataset", ...})``; ``pretrain.csv`` names it). ``--from-checkpoint PATH`` skips
   this and starts every seed from that one checkpoint.
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

Every run is a cell of the runner (``initlab.runs.runner``: resume, workers, Ray, Ctrl-C): the
pretraining runs are one group of cells, and each target group names it as its ``start``, so the
runner trains it first and starts each target run of a mode from the pretrained run of its seed
(``study.PRETRAINED`` inits); the scratch inits share the modes' stack, as before.

The output folder gets ``runs.csv`` (one row per run: ``init``, ``target_images``, ``seed``,
``test_acc``, ``steps_to_90``, ``steps_to_97``, held-out accuracy at early steps ...), ``curves.csv``,
``pretrain.csv``, ``config.json``, ``meta.json``, the run store with the checkpoints and ``report.md`` /
``report.html`` (``write_report``, from those files alone).

"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Tuple

import torch

from initlab import data, engine, files, init, models
from initlab import data as data_mod
from initlab.activations import ACTIVATIONS
from initlab.engine import TrainConfig
from initlab.experiments import study
from initlab.experiments.limits import check_seeds
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
    # the training settings transfer fixes: Adam for pretraining and target alike, the epochs and images
    # its own settings say, no histograms
    NOT_FLAGS: ClassVar[Tuple[str, ...]] = ("train.epochs", "train.optimizer", "train.weight_decay",
                                            "train.schedule", "train.label_smoothing", "train.normalize",
                                            "train.train_size", "train.hist_moments")
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
    if not cfg.from_checkpoint and study.image_shape(cfg.source) != study.image_shape(cfg.target):
        shape = lambda name: "x".join(map(str, study.image_shape(name)))
        raise TransferError(f"{cfg.source} images are {shape(cfg.source)}, {cfg.target} images "
                            f"{shape(cfg.target)}: one model cannot take both")
    for group in plan(cfg):              # what the runner trains: the study's own checks
        study.validate(group)


# --------------------------------------------------------------------------------------------------
# Layers, checkpoints
# --------------------------------------------------------------------------------------------------

def conv_layers(model) -> List[str]:
    """Names of the model's convolutions: what ``freeze`` holds fixed (LeNet-5: c1, c3, c5)."""
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def head_layer(model) -> str:
    """Name of the output layer (the last Conv/Linear): what ``reinit_head`` redraws."""
    return study.output_layer(model)


def save_checkpoint(path: Path, model, *, model_name: str, model_options: Dict, dataset: str,
                    config: Dict, **extra) -> Path:
    """``torch.save({"state_dict", "config", "model", "model_options", "dataset", ...})``, atomically and
    with the umask's mode (``files.atomic_torch_save``)."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "config": config, "model": model_name, "model_options": dict(model_options),
               "dataset": dataset, **extra}
    path = Path(path)
    files.atomic_torch_save(path, payload)
    return path


def load_checkpoint(path, model_name: str, model_options: Dict) -> Tuple[Dict, Dict]:
    """The state dict of a checkpoint that fits ``model_name`` built with ``model_options``, and the
    rest of the checkpoint. Anything else -- a missing or unreadable file, another model, other
    options, another shape -- is a one-line ``TransferError``."""
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
# The experiment: its cells on the runner
# --------------------------------------------------------------------------------------------------

def epochs_for(n_images: int, batch_size: int, min_steps: int, min_epochs: int) -> int:
    """Epochs over ``n_images`` so that training lasts at least ``min_steps`` steps and ``min_epochs``
    epochs: ``max(min_epochs, ceil(min_steps / ceil(n_images / batch_size)))``."""
    per_epoch = math.ceil(n_images / batch_size)
    return max(min_epochs, math.ceil(min_steps / per_epoch))


def acc_at(curve: List[dict], step: int) -> Optional[float]:
    """Held-out accuracy recorded at exactly ``step`` (None if that step was not a record point)."""
    return next((r["heldout_acc"] for r in curve if r["step"] == step), None)


def target_plan(cfg: TransferConfig) -> List[dict]:
    """Per target size: images, epochs (:func:`epochs_for`) and training steps."""
    plan = []
    for n in cfg.target_sizes:
        epochs = epochs_for(n, cfg.train.batch_size, cfg.min_steps, cfg.target_epochs)
        plan.append({"target_images": n, "epochs": epochs,
                     "steps": engine.steps_for(n, replace(cfg.train, epochs=epochs))})
    return plan


# the init spec of each mode's runs (study.PRETRAINED: start from the weights the config's start names)
MODE_SPECS = {"finetune": study.PRETRAINED, "freeze": study.PRETRAINED,
              "reinit_head": f"{study.PRETRAINED}:head={HEAD_INIT}"}


def _groups(cfg: TransferConfig) -> List[Tuple[str, Optional[dict], study.StudyConfig]]:
    """(role, target size's plan row, study config) of each group of cells: the pretraining (role
    ``pretrain``; none with ``from_checkpoint``), then per target size the stack of the modes and the
    scratch inits (``target``) and the stack of ``freeze`` (``freeze``: freezing holds for a whole
    stack), with the same seeds, hence the same data order."""
    base = dict(seeds=cfg.seeds, first_seed=cfg.first_seed, model=cfg.model, activation=cfg.activation,
                device=cfg.device)
    out: List[Tuple[str, Optional[dict], study.StudyConfig]] = []
    if cfg.from_checkpoint:
        start = str(Path(cfg.from_checkpoint).resolve())
    else:
        n_source = data_mod.DATASETS.get(cfg.source).train_size if cfg.source in data_mod.DATASETS else None
        size = cfg.pretrain_size if cfg.pretrain_size and (n_source is None or cfg.pretrain_size < n_source) \
            else None
        out.append(("pretrain", None, study.StudyConfig(
            inits=[cfg.pretrain_init], dataset=cfg.source, draw_offset=PRETRAIN_SEED_OFFSET, keep_weights=True,
            train=replace(cfg.train, epochs=cfg.pretrain_epochs, train_size=size, record=False), **base)))
        start = "group:0"
    n_target = data_mod.DATASETS.get(cfg.target).train_size if cfg.target in data_mod.DATASETS else None
    frozen = conv_layers(models.build(cfg.model, **cfg.model_options())) if "freeze" in cfg.modes else []
    for p in target_plan(cfg):
        n = p["target_images"]
        train = replace(cfg.train, epochs=p["epochs"], train_size=None if n == n_target else n)
        members = [MODE_SPECS[m] for m in cfg.modes if m != "freeze"] + list(cfg.inits)
        if members:
            out.append(("target", p, study.StudyConfig(inits=members, dataset=cfg.target, start=start,
                                                       train=train, **base)))
        if "freeze" in cfg.modes:
            out.append(("freeze", p, study.StudyConfig(inits=[MODE_SPECS["freeze"]], dataset=cfg.target,
                                                       start=start, frozen=frozen, train=train, **base)))
    return out


def plan(cfg: TransferConfig) -> List[study.StudyConfig]:
    """The study configs of the runner (``initlab.runs.runner``): the pretraining first, whose runs the
    target runs start from (``start``: its group; each run from the pretrained run of its seed)."""
    return [group for _, _, group in _groups(cfg)]


def to_dict(cfg: TransferConfig) -> dict:
    """config.json: the settings, the seeds, the steps per target size, the head's init."""
    return {**asdict(cfg), "seed_list": cfg.seed_list, "plan": target_plan(cfg), "head_init": HEAD_INIT,
            "early_steps": list(EARLY_STEPS)}


def from_dict(d: dict) -> TransferConfig:
    names = {f.name for f in fields(TransferConfig)} - {"train"}
    t_names = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in d.get("train", {}).items() if k in t_names}
    return TransferConfig(**{k: v for k, v in d.items() if k in names},
                          **({"train": replace(_default_train(), **train)} if "train" in d else {}))


def mode_of(spec: str, group: study.StudyConfig) -> str:
    """A run's name in the tables: its transfer mode, or its scratch init spec."""
    if not study.is_pretrained(spec):
        return spec
    return "freeze" if group.frozen else "reinit_head" if study.pretrained_head(spec) else "finetune"


def _checkpoint_acc(path: str) -> Optional[float]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("test_acc")
    except Exception:  # noqa: BLE001 - gone or unreadable since: the table says nothing
        return None


def collect(config: dict, runs: List[dict]) -> Dict[str, List[dict]]:
    """pretrain.csv (one row per pretraining run, its checkpoint the weights kept with its records, or
    the ``from_checkpoint`` file for every seed), runs.csv (one row per target run: ``init`` -- the
    mode or scratch init --, ``target_images``, ``seed``, ``test_acc``, accuracy at early steps, steps
    to 90 % and 97 % ...) and curves.csv, from the runner's finished runs; in the order the old loop
    wrote them (per target size: the stack of modes and inits, then freeze; seed-major)."""
    cfg = from_dict(config)
    groups = _groups(cfg)
    pretrain: List[dict] = []
    targets = []
    for run in runs:
        k = run["groups"][0] if run["groups"] else None
        if k is None:
            continue
        role, p, group = groups[k]
        r = run["row"]
        if role == "pretrain":
            pretrain.append({"seed": r["seed"], "source": cfg.source, "init": cfg.pretrain_init,
                             "epochs": cfg.pretrain_epochs,
                             "images": group.train.train_size or data_mod.DATASETS.get(cfg.source).train_size,
                             "steps": r["steps"], "test_acc": r["test_acc"], "test_loss": r["test_loss"],
                             "seconds": r["stack_seconds"], "checkpoint": f"{run['records']}/weights.pt"})
        else:
            targets.append((k, r["seed"], group.inits.index(run["init"]), run, p, group))
    pretrain.sort(key=lambda x: x["seed"])
    if cfg.from_checkpoint:
        acc = _checkpoint_acc(cfg.from_checkpoint)
        pretrain = [{"seed": seed, "source": cfg.source, "checkpoint": str(cfg.from_checkpoint), "test_acc": acc}
                    for seed in cfg.seed_list]
    pre_acc = {x["seed"]: x.get("test_acc") for x in pretrain}
    rows, curves = [], []
    for _, seed, _, run, p, group in sorted(targets, key=lambda t: t[:3]):
        r = run["row"]
        name = mode_of(run["init"], group)
        curve = sorted(run["tables"].get("curves", []), key=lambda c: c["step"])
        key = {"init": name, "target_images": p["target_images"], "seed": seed}
        curves.extend({**key, **{k: v for k, v in c.items() if k not in ("run", "init", "seed")}} for c in curve)
        transferred = name in MODES
        rows.append({
            **key, "kind": "transfer" if transferred else "scratch",
            "source": cfg.source if transferred else None, "target": cfg.target,
            "test_acc": r["test_acc"], "test_loss": r["test_loss"], "acc_at_0": acc_at(curve, 0),
            **{f"acc_at_{s}": acc_at(curve, s) for s in EARLY_STEPS},
            "steps_to_90": study.steps_to(curve, 0.90, HELDOUT), "steps_to_97": study.steps_to(curve, 0.97, HELDOUT),
            "steps": r["steps"], "epochs": p["epochs"],
            "pretrain_test_acc": pre_acc.get(seed) if transferred else None,
            "diverged": r["diverged"], "train_seconds": r["train_seconds"], "interrupted": False,
        })
    return {"curves": curves, "pretrain": pretrain, "runs": rows}
