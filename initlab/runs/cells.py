"""Cells: one run's settings (init x seed x the rest), its hash in the run store, and its names.

A cell's identity is the SHA-256 of the canonical JSON of what it computes (``cell_settings`` plus init
and seed; ``store.config_hash``), so a grid listing its settings in any order, or a study run with
other workers, finds the same cells again. ``grp`` hashes the settings without init and seed: the
cells of one group can train together as one engine stack.
"""
from __future__ import annotations

import re
from dataclasses import asdict, replace
from typing import Dict, List, Optional, Sequence

from initlab.runs import store as st

# settings that say how or where runs are trained, not what a run is: not part of a cell's hash
NOT_IN_CELL = ("inits", "seeds", "first_seed", "data_dir", "device", "seeds_per_stack", "workers")
# settings a grid sets once at its top, for every cell (a list there is an error)
SWEEP_WIDE = ("seeds", "first_seed", "seeds_per_stack", "data_dir", "device")


# fields added to StudyConfig after run stores were first written, with their defaults: left out of a
# cell's hash while at the default, so the hashes of earlier stores (and their resumes) stay valid
ADDED_LATER = {"width": None, "depth": None, "conv": False, "validation": False, "parametrization": "sp",
               "draw_offset": 10_000, "start": None, "frozen": [], "keep_weights": False}
ADDED_LATER_TRAIN = {"hist_moments": 8}     # (the same for TrainConfig's fields)


def cell_settings(cfg) -> dict:
    """A StudyConfig's settings that change what a run computes (every field but NOT_IN_CELL, so a
    field added to StudyConfig or TrainConfig later is part of the hash without anyone remembering)."""
    d = asdict(cfg)
    for key in NOT_IN_CELL:
        d.pop(key, None)
    for key, default in ADDED_LATER.items():     # at its default, a newer field leaves the hash alone
        if d.get(key, default) == default:
            d.pop(key, None)
    for key, default in ADDED_LATER_TRAIN.items():
        if d.get("train", {}).get(key, default) == default:
            d.get("train", {}).pop(key, None)
    return d


def make_cell(settings: dict, init: str, seed: int) -> dict:
    """A store row for one cell: hash, canonical JSON config, init, seed and group hash."""
    config = {**settings, "init": init, "seed": seed}
    text = st.canonical_json(config)
    return {"hash": st.config_hash(config), "config": text, "init": init, "seed": seed,
            "grp": st.config_hash(settings)}


def cells_of(cfg) -> List[dict]:
    """The cells of a study config: seed-major, init-minor (the order ``run_study`` numbers runs)."""
    settings = cell_settings(cfg)
    return [make_cell(settings, spec, seed) for seed in cfg.seed_list for spec in cfg.inits]


def linked(groups: Sequence) -> list:
    """An experiment's plan (study configs) with every ``start = "group:K"`` -- the K-th config of the
    same plan, whose runs train first -- written as ``"cell:<that config's group hash>"``: a run that
    starts from another run's weights then has a hash that follows what that run computes (other
    pretraining settings, other runs), and the runner finds the run of the same seed by its group."""
    out = []
    for cfg in groups:
        if isinstance(cfg.start, str) and cfg.start.startswith("group:"):
            k = int(cfg.start[len("group:"):])
            if not 0 <= k < len(out):
                raise ValueError(f"start {cfg.start}: a run starts from a group planned before it")
            cfg = replace(cfg, start=CELL_START + st.config_hash(cell_settings(out[k])))
        out.append(cfg)
    return out


def settings_of(config: dict) -> dict:
    """A cell config's settings without its init and seed (what its group shares)."""
    return {k: v for k, v in config.items() if k not in ("init", "seed")}


def flatten(settings: dict) -> Dict[str, object]:
    """{"model": ..., "lr": ...}: nested train settings by their leaf name."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    return out


def _leaves(config: dict) -> Dict[str, object]:
    """A cell config's settings by leaf name, with the ADDED_LATER fields its hash leaves out at their
    defaults (so that ``frozen`` set on some cells only is a setting that differs)."""
    settings = settings_of(config)
    train = {**ADDED_LATER_TRAIN, **settings.get("train", {})} if "train" in settings else {}
    return flatten({**ADDED_LATER, **settings, **({"train": train} if train else {})})


def varied_settings(configs: Sequence[dict]) -> Dict[str, list]:
    """{leaf name: [values in first-seen order]} for the settings (besides init and seed) that differ
    between the given cell configs."""
    seen: Dict[str, list] = {}
    for config in configs:
        for key, value in _leaves(config).items():
            values = seen.setdefault(key, [])
            if value not in values:
                values.append(value)
    return {k: v for k, v in seen.items() if len(v) > 1}


CELL_START = "cell:"     # a ``start`` naming a group of the same plan: "cell:<its group hash>"


def start_group(start) -> Optional[str]:
    """The group hash a config's ``start`` names (``cell:<hash>``); None for no start or a checkpoint file."""
    return start[len(CELL_START):] if isinstance(start, str) and start.startswith(CELL_START) else None


def variant(config: dict, varied: Dict[str, list]) -> str:
    """'lr=0.01 train_size=2000': the varied settings of one cell ('' when nothing varies)."""
    flat = _leaves(config)
    short = lambda v: v[:len(CELL_START) + 8] if start_group(v) else v   # a group hash
    return " ".join(f"{k}={short(flat.get(k))}" for k in varied)


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters become one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


def tb_name(config: dict, varied: Dict[str, list]) -> str:
    """A run's TensorBoard folder under DIR/tb: [variant/]init/seedK."""
    parts = ([slug(variant(config, varied))] if varied else []) + [slug(config["init"]),
                                                                   f"seed{config['seed']}"]
    return "/".join(parts)

