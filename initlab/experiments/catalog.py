"""Every experiment by name: the protocol the runner, the commands and ``initlab report`` read.

An experiment module that declares ``EXPERIMENT`` (``initlab.experiments.protocol``) is found here by
itself, its report module beside it; the older experiments are listed below. Each entry says how to
rebuild the experiment's report from a result folder and which table sums it up in the terminal
(``meta.json`` names the experiment that wrote a folder). An experiment that trains through the runner
(``initlab.runs.runner``) also gives ``plan(cfg) -> [StudyConfig]`` (its cells: every init x seed of
each study config), ``collect(config dict, finished runs) -> {table: rows}``, and ``to_dict`` /
``from_dict`` for its config (stored with the plan, so ``--resume`` and ``initlab report`` need nothing
else). A plan's study config may start from the runs of an earlier one (``start = "group:K"``: transfer's
target runs from its pretraining); the runner trains it after them."""
from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from pathlib import Path
from typing import Dict, List

import initlab.experiments
from initlab import files
from initlab.experiments import bonus, grid, probe_report, study_report, transfer, transfer_report
from initlab.experiments.protocol import Experiment, Table, from_fields


def _study_summary(out: Path) -> Table:
    return study_report.summary_table(study_report.load(out))


def _bonus_summary(out: Path) -> Table:
    runs = files.read_table(out, "runs")
    return (["seed", "test acc", f">= {100 * bonus.TARGET:.1f} %"],
            [[r["seed"], f"{100 * r['test_acc']:.2f} %", "yes" if r["test_acc"] >= bonus.TARGET else "NO"]
             for r in runs])


def _bonus_tables(out: Path) -> List[Table]:
    ablation = files.read_table(out, "ablation")
    return [_bonus_summary(out)] + ([(["ablation (validation split)", "acc (mean)", "min", "seeds"],
                                      [[a["name"], f"{100 * a['mean']:.2f} %", f"{100 * a['min']:.2f} %", a["n"]]
                                       for a in ablation])] if ablation else [])


def _grid_summary(out: Path) -> Table:
    cfg = files.read_json(Path(out) / "config.json")
    rows = files.read_table(out, "runs") or files.read_table(out, "grid")
    return grid.grid_table(rows, cfg.get("inits", []), cfg.get("activations", []))


def _probe_summary(out: Path) -> Table:
    cfg = files.read_json(Path(out) / "config.json")
    return probe_report.ratio_table(files.read_table(out, "probe"), cfg["inits"], cfg["activations"])


def _transfer_summary(out: Path) -> Table:
    return transfer_report.summary_table(transfer_report.load_tables(out))


EXPERIMENTS: Dict[str, Experiment] = {e.name: e for e in (
    Experiment("study", study_report.write_report, _study_summary),
    Experiment("bonus", bonus.write_report, _bonus_summary, bonus.plan, bonus.collect, bonus.to_dict,
               bonus.from_dict, _bonus_tables),
    Experiment("grid", grid.write_report, _grid_summary, grid.plan, grid.collect, grid.to_dict, grid.from_dict),
    Experiment("probe", probe_report.write_report, _probe_summary),
    Experiment("transfer", transfer_report.write_report, _transfer_summary, transfer.plan, transfer.collect,
               transfer.to_dict, transfer.from_dict),
)}


def declared(module_name: str) -> Experiment:
    """The experiment module ``module_name`` declares (its ``EXPERIMENT``), completed with its report
    module (``<name>_report``: write_report, summary_table, summary_tables, observations) and, where it
    gives none, ``from_dict`` from its config's fields."""
    exp = importlib.import_module(f"initlab.experiments.{module_name}").EXPERIMENT
    report = importlib.import_module(f"initlab.experiments.{exp.name}_report")
    return dataclasses.replace(
        exp, write_report=exp.write_report or report.write_report, summary=exp.summary or report.summary_table,
        tables=exp.tables or getattr(report, "summary_tables", None),
        observations=exp.observations or getattr(report, "observations", None),
        from_dict=exp.from_dict or functools.partial(from_fields, exp.config))


def _declaring_modules() -> List[str]:
    """The modules of initlab.experiments that declare an experiment (``EXPERIMENT``), by name."""
    names = []
    for info in pkgutil.iter_modules(initlab.experiments.__path__):
        if info.name in ("catalog", "protocol") or info.name.endswith("_report"):
            continue
        if hasattr(importlib.import_module(f"initlab.experiments.{info.name}"), "EXPERIMENT"):
            names.append(info.name)
    return sorted(names)


for _module in _declaring_modules():
    _exp = declared(_module)
    EXPERIMENTS[_exp.name] = _exp

# the experiments that train through the runner, with resume, workers, Ray and Ctrl-C
STORED = tuple(name for name, e in EXPERIMENTS.items() if e.plan is not None)

# the experiments on the runner whose config is flat: the Python API has a function for each (api_stored)
FLAT = tuple(name for name, e in EXPERIMENTS.items() if e.validate is not None)
