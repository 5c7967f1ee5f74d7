"""What several commands share: the study's settings from flags and ``--config``, and loading data."""
from __future__ import annotations

import argparse

from initlab import data
from initlab.engine.tensorboard import TensorBoardMissing, require
from initlab.experiments import study
from initlab.options import (
    STUDY_FLAGS,
    UsageError,
    add_config_flag,
    add_flags,
    add_output_flags,
    add_workers_flag,
    configure,
)
from initlab.runs import store as st
from initlab.runs.cells import NOT_IN_CELL
from initlab.runs.plan import config_for


def add_study_options(p: argparse.ArgumentParser, name: str, base: study.StudyConfig) -> None:
    """The study's flags (defaults shown from ``base``), ``--config``, the output flags, ``--workers``."""
    add_flags(p, STUDY_FLAGS, base)
    add_config_flag(p)
    add_output_flags(p, name)
    add_workers_flag(p)


def study_config(args: argparse.Namespace, base=None) -> study.StudyConfig:
    """Defaults (``base`` or the lab's) < ``--config`` TOML < flags -> a validated StudyConfig."""
    extra = {"workers": args.workers} if getattr(args, "workers", 0) else None
    return configure(args, base or study.StudyConfig(), STUDY_FLAGS, study.validate, extra=extra)


def load_data(name: str, data_dir, quiet: bool) -> data.Dataset:
    """The dataset, or a one-line UsageError saying how to supply it."""
    try:
        return data.load_dataset(name, data_dir, quiet=quiet)
    except data.DataError as e:
        raise UsageError(str(e)) from None


def stored_study_config(args):
    """The StudyConfig a ``study --resume`` starts from (flags on the command line still win)."""

    if not getattr(args, "resume", False):
        return None
    if args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if not st.exists(args.out):
        return None                       # nothing stored yet: --resume starts the study
    with st.Store(args.out) as store:
        plan = store.meta("plan", {})
    if plan.get("kind") != "study":
        raise UsageError(f"--out {args.out} holds a sweep; resume it with initlab sweep --resume")
    d = {k: v for k, v in plan["study"].items() if k != "seed_list"}
    cfg = config_for({k: v for k, v in d.items() if k not in NOT_IN_CELL}, d["inits"],
                     list(range(d["first_seed"], d["first_seed"] + d["seeds"])), d)
    cfg.seeds_per_stack = d.get("seeds_per_stack", 0)
    if "workers" in d:
        cfg.workers = d["workers"]
    return cfg


def check_options(args) -> None:

    if getattr(args, "tensorboard", False):

        try:
            require()
        except TensorBoardMissing as e:
            raise UsageError(str(e)) from None
