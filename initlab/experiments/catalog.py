"""Every experiment by name: the protocol the runner, the commands and ``initlab report`` read.

Each entry says how to rebuild the experiment's report from a result folder and which table sums it up
in the terminal (``meta.json`` names the experiment that wrote a folder). An experiment that trains
through the runner (``initlab.runs.runner``) also gives ``plan(cfg) -> [StudyConfig]`` (its cells: every
init x seed of each study config), ``collect(config dict, finished runs) -> {table: rows}``,
and ``to_dict`` / ``from_dict`` for its config (stored with the plan, so ``--resume`` and
``initlab report`` need nothing else). A plan's study config may start from the runs of an earlier one
(``start = "group:K"``: transfer's target runs from its pretraining); the runner trains it after them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from initlab import files
from initlab.experiments import (
    bonus,
    criticality,
    criticality_report,
    depth,
    depth_report,
    grid,
    probe_report,
    study_report,
    transfer,
    transfer_report,
    width,
    width_report,
)

Table = Tuple[List[str], List[List[str]]]


@dataclass(frozen=True)
class Experiment:
    name: str
    write_report: Callable[[Path], Path]     # result folder -> report.html, from the files alone
    summary: Callable[[Path], Table]          # result folder -> (head, body) for the terminal
    plan: Optional[Callable[[Any], list]] = None                  # config -> [StudyConfig], the cells
    collect: Optional[Callable[[dict, list], Dict[str, List[dict]]]] = None   # finished runs -> tables
    to_dict: Callable[[Any], dict] = dataclasses.asdict                      # config -> config.json
    from_dict: Optional[Callable[[dict], Any]] = None                        # config.json -> config
    tables: Optional[Callable[[Path], List[Table]]] = None    # every table for the terminal (default: summary)
    prepare: Optional[Callable[[Any, Path, Any, bool], None]] = None   # (cfg, folder, dataset, resume): what
    # it computes without training, written before the runner trains (a probe, theory, a coordinate check)
    validate: Optional[Callable[[Any], None]] = None    # a flat config's check (the Python API's keywords)

    def summary_tables(self, out: Path) -> List[Table]:
        return self.tables(out) if self.tables else [self.summary(out)]


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
    Experiment("depth", depth_report.write_report, depth_report.summary_table, depth.plan, depth.collect,
               dataclasses.asdict, depth.from_dict, depth_report.summary_tables, depth.prepare, depth.validate),
    Experiment("criticality", criticality_report.write_report, criticality_report.summary_table,
               criticality.plan, criticality.collect, criticality.to_dict, criticality.from_dict,
               criticality_report.summary_tables, criticality.prepare, criticality.validate),
    Experiment("width", width_report.write_report, width_report.summary_table, width.plan, width.collect,
               width.to_dict, width.from_dict, None, width.prepare, width.validate),
)}

# the experiments that train through the runner, with resume, workers, Ray and Ctrl-C
STORED = tuple(name for name, e in EXPERIMENTS.items() if e.plan is not None)

# the experiments on the runner whose config is flat: the Python API has a function for each (api_stored)
FLAT = tuple(name for name, e in EXPERIMENTS.items() if e.validate is not None)
