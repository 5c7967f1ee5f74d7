"""Grid files: the TOML a sweep reads, as the validated StudyConfigs of its setting combinations.

A grid is a TOML file of study settings (the ``initlab study`` flag names, ``-`` or ``_``): a list
value means "try each" and the configs are the cartesian product; ``[[cell]]`` tables list
combinations explicitly (each merged over the top-level settings, and expanded the same way).
``seeds``, ``first_seed``, ``seeds_per_stack``, ``data_dir`` and ``device`` are sweep-wide.
"""
from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Optional

from initlab.experiments import study
from initlab.experiments.limits import MAX_RUNS, check_seeds
from initlab.experiments.study import StudyConfig
from initlab.options import UsageError, configure, flags_of, read_toml
from initlab.runs.cells import SWEEP_WIDE


def read_grid(path: Path, args: Optional[argparse.Namespace] = None, doc: Optional[dict] = None) -> list:
    """The validated StudyConfigs of a grid file, one per combination of its list-valued settings;
    study flags in ``args`` override the file (as for ``initlab study --config``). ``doc``: the file's
    contents, when the caller has read it already."""
    doc = dict(read_toml(path) if doc is None else doc)
    doc.pop("experiment", None)                  # "study", the default (initlab.runs.experiment_sweep: others)
    entries = doc.pop("cell", None)
    known = {f.key: f.dest for f in flags_of(StudyConfig)}

    def norm(table: dict, where: str) -> dict:
        out = {}
        for key, value in table.items():
            key = key.replace("-", "_")
            if key == "init":                      # [[cell]] init = "xavier" reads naturally
                key, value = "inits", value if isinstance(value, list) else [value]
            if key not in known:
                raise UsageError(f"unknown setting {key!r} in {where}; valid: "
                                 f"{', '.join(sorted(known))}, [[cell]]")
            out[key] = value
        return out

    if entries is not None and not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise UsageError(f"'cell' in {path} must be a list of tables ([[cell]])")
    base = norm(doc, str(path))
    flags = {f.dest: vars(args)[f.dest] for f in flags_of(StudyConfig) if args and f.dest in vars(args)}
    combos, n_combos = [], 0
    for k, entry in enumerate(entries or [{}]):
        e = norm(entry, f"{path} [[cell]] #{k + 1}")
        wide = [key for key in e if key in SWEEP_WIDE]
        if wide:
            raise UsageError(f"{wide[0]} is sweep-wide: set it at the top of {path}, not in [[cell]]")
        merged = {**base, **e}
        axes = [key for key, v in merged.items() if isinstance(v, list) and key != "inits"]
        for key in axes:
            if key in SWEEP_WIDE:
                raise UsageError(f"{key} cannot be a list in {path}: it is sweep-wide")
            if not merged[key]:
                raise UsageError(f"{key} = [] in {path}: give at least one value")
        n_combos += math.prod(len(merged[a]) for a in axes)
        if n_combos > MAX_RUNS:                   # each gives a run at least: refused unexpanded
            raise UsageError(f"{path}: more runs than one command may plan ({n_combos:,} setting "
                             f"combinations; at most {MAX_RUNS:,} runs)")
        for values in itertools.product(*(merged[a] for a in axes)):
            combos.append({**merged, **dict(zip(axes, values))})
    configs = []
    for combo in combos:
        ns = argparse.Namespace(config=None, **{known[k]: v for k, v in combo.items()})
        for dest, value in flags.items():
            setattr(ns, dest, value)
        configs.append(configure(ns, StudyConfig(), flags_of(StudyConfig), study.validate))
    runs = sum(len(c.inits) for c in configs)           # per seed; seeds and first_seed are sweep-wide
    check_seeds(configs[0].seeds, configs[0].first_seed, runs,
                      f"{runs:,} inits in {len(configs):,} setting combinations")
    return configs
