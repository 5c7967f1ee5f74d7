"""A study's result folder: its config as a dict and back, its tables assembled from finished runs."""
from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

from initlab import engine, files
from initlab.experiments.study import StudyConfig, StudyResult


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
