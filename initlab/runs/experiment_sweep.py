"""A sweep of an experiment other than the study: one result folder of it per setting combination, each
trained, resumed and reported by the runner, and an index of them all.

A grid file that names ``experiment = "width"`` (any experiment declared on the runner) holds that
experiment's settings; a list value of a one-value setting (``base_width = [32, 64]``) or a list of
lists for a list setting (``widths = [[64, 256], [128, 512]]``) means "try each", and the combinations
are their cartesian product. Combination k trains into ``DIR/groups/<its settings>/`` through
:func:`initlab.runs.runner.run_experiment` (resume, workers, Ray, Ctrl-C, checksummed records: the
experiment's own folder), and ``DIR`` gets ``runs.csv`` (every group's runs, with the combination's
settings as columns) and a report linking the groups'.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any, Dict, List, Tuple

from initlab import files
from initlab.document import Document
from initlab.experiments.catalog import EXPERIMENTS, FLAT
from initlab.experiments.limits import MAX_RUNS
from initlab.options import UsageError, configure, flags_of, prepare_out
from initlab.runs.cells import slug
from initlab.runs.runner import Execution, Outcome, run_experiment, unique_cells

GROUPS = "groups"
LISTS = ("list", "ints", "floats")


def read_experiment_grid(path: Path, doc: dict) -> Tuple[str, List[Tuple[Dict[str, Any], Any]]]:
    """(experiment, [(the combination's varied settings, its checked config)]) of a grid file's
    contents ``doc`` that names an ``experiment``."""
    name = doc.pop("experiment")
    if name not in FLAT:
        raise UsageError(f"experiment {name!r} in {path}: a sweep takes study settings or one of "
                         f"{', '.join(FLAT)}")
    exp = EXPERIMENTS[name]
    flags = {f.key: f for f in flags_of(exp.config)}
    settings = {}
    for key, value in doc.items():
        key = key.replace("-", "_")
        if key not in flags:
            raise UsageError(f"unknown setting {key!r} of {name} in {path}; valid: {', '.join(sorted(flags))}")
        settings[key] = value

    def is_axis(key: str, value) -> bool:
        if not isinstance(value, list):
            return False
        return all(isinstance(v, list) for v in value) if flags[key].kind in LISTS else True

    axes = [k for k, v in settings.items() if is_axis(k, v)]
    for key in axes:
        if not settings[key]:
            raise UsageError(f"{key} = [] in {path}: give at least one value")
    varies = [k for k in axes if len(settings[k]) > 1]        # (an axis of one value names no folder)
    combos, runs = [], 0
    for values in itertools.product(*(settings[k] for k in axes)):
        combo = {**settings, **dict(zip(axes, values))}
        ns = argparse.Namespace(config=None, **{flags[k].dest: v for k, v in combo.items()})
        cfg = exp.resolve(configure(ns, exp.config(), list(flags.values()), exp.validate))
        runs += len(unique_cells(exp.plan(cfg)))
        if runs > MAX_RUNS:
            raise UsageError(f"{path}: more runs than one command may plan (at most {MAX_RUNS:,})")
        combos.append(({k: v for k, v in zip(axes, values) if k in varies}, cfg))
    return name, combos


def _shown(value) -> Any:
    """A combination's value in a folder name or a table cell: a list as ``64+256``."""
    return "+".join(map(str, value)) if isinstance(value, list) else value


def label(varied: Dict[str, Any]) -> str:
    """A combination's folder name: ``base_width=32,depth=2`` (``all`` when nothing varies)."""
    return slug(",".join(f"{k}={_shown(v)}" for k, v in varied.items())) or "all"


def run_sweep(name: str, combos: List[Tuple[Dict[str, Any], Any]], out: Path, execution: Execution,
              resume: bool, force: bool, dataset=None) -> Outcome:
    """Train every combination into its group folder, one after the other (each on ``execution``'s
    workers or Ray), then write the index. The outcome says whether Ctrl-C stopped a group (the later
    ones were not started) and lists the failures, one line each."""
    exp = EXPERIMENTS[name]
    total = Outcome()
    for varied, cfg in combos:
        folder = prepare_out(Path(out) / GROUPS / label(varied), name, force or resume)
        outcome = run_experiment(name, cfg, folder, execution, resume=resume, force=force, dataset=dataset)
        if outcome.info["finished"]:
            exp.write_report(folder)
        total.failed += [f"{label(varied)}: {line}" for line in outcome.failed + outcome.info["failed"]]
        if outcome.interrupted:
            total.interrupted = True
            break
    write_index(out, name, [varied for varied, _ in combos], interrupted=total.interrupted)
    return total


def write_index(out: Path, name: str, combos: List[Dict[str, Any]], interrupted: bool = False) -> Path:
    """DIR's config.json, meta.json, runs.csv (every group's runs, its varied settings first) and the
    report linking each group's, from the group folders alone (``initlab report DIR`` calls it again)."""
    out = Path(out)
    exp = EXPERIMENTS[name]
    rows, groups = [], []
    for varied in combos:
        folder = out / GROUPS / label(varied)
        runs = files.read_table(folder, "runs") if (folder / "runs.csv").exists() else []
        rows += [{**{k: _shown(v) for k, v in varied.items()}, **r} for r in runs]
        groups.append((varied, folder, bool(runs)))
    files.write_result(out, "sweep", {"experiment": name, "combinations": combos}, {"runs": rows},
                       {"interrupted": interrupted})
    doc = Document(f"initlab sweep of {name}" + (" (interrupted)" if interrupted else ""),
                   f"{len(combos)} setting combinations, {len(rows)} finished runs")
    for varied, folder, done in groups:
        doc.heading(label(varied))
        if done:
            for head, body in exp.summary_tables(folder):
                doc.table(head, body)
            doc.paragraph(f"[its report]({(folder / 'report.md').relative_to(out)})")
        else:
            doc.paragraph("no run finished yet")
    return doc.write(out)
