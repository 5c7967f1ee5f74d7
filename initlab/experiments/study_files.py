"""A study's result folder read back as tables, and the per-init and per-layer numbers its report uses."""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from initlab.document import mean
from initlab.files import read_json, read_table
from initlab.seeds import over_seeds


@dataclass
class StudyFiles:
    out: Path
    config: dict
    meta: dict
    runs: List[dict]
    curves: List[dict]
    layers: List[dict]
    hists: List[dict]

    @property
    def inits(self) -> List[str]:
        order = self.config.get("inits") or []
        seen = [r["init"] for r in self.runs]
        return [i for i in order if i in seen] + sorted(set(seen) - set(order))


def load(out: Path) -> StudyFiles:
    out = Path(out)
    return StudyFiles(out, read_json(out / "config.json"), read_json(out / "meta.json"),
                      read_table(out, "runs"), read_table(out, "curves"), read_table(out, "layers"),
                      read_table(out, "histograms"))


def finished_only(f: StudyFiles) -> Tuple[StudyFiles, List[dict]]:
    """(the files without the runs stopped part-way, those runs' rows): a partial run stays in runs.csv,
    marked ``interrupted``, but no table or sentence of the report is computed from it. Where no run
    finished, nothing is left out (the report then says that every row is partial)."""
    stopped = [r for r in f.runs if r.get("interrupted")]
    if not stopped or len(stopped) == len(f.runs):
        return f, stopped
    keep = {r["run"] for r in f.runs if not r.get("interrupted")}
    return dataclasses.replace(f, runs=[r for r in f.runs if r["run"] in keep],
                               curves=[r for r in f.curves if r["run"] in keep],
                               layers=[r for r in f.layers if r["run"] in keep],
                               hists=[r for r in f.hists if r["run"] in keep]), stopped


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

def by_init(rows: List[dict]) -> Dict[str, List[dict]]:
    out: Dict[str, List[dict]] = defaultdict(list)
    for r in rows:
        out[r["init"]].append(r)
    return out


def layer_names(f: StudyFiles) -> List[str]:
    names: List[str] = []
    for r in f.layers:
        if r["layer"] not in names:
            names.append(r["layer"])
    return names


def layer_at(f: StudyFiles, init: str, step: str, key: str) -> Dict[str, float]:
    """{layer: mean over seeds of ``key``} at the first (``step='first'``) or last record of each run."""
    rows = [r for r in f.layers if r["init"] == init]
    if not rows:
        return {}
    per_run: Dict[int, List[dict]] = defaultdict(list)
    for r in rows:
        per_run[r["run"]].append(r)
    picked = []
    for run_rows in per_run.values():
        target = min(r["step"] for r in run_rows) if step == "first" else max(r["step"] for r in run_rows)
        picked += [r for r in run_rows if r["step"] == target]
    out = {}
    for layer in layer_names(f):
        out[layer] = mean([r[key] for r in picked if r["layer"] == layer])
    return out


def layer_max_over_run(f: StudyFiles, init: str, key: str) -> Dict[str, float]:
    out = {}
    for layer in layer_names(f):
        vals = [abs(r[key]) for r in f.layers if r["init"] == init and r["layer"] == layer
                and r[key] is not None and not math.isnan(r[key])]
        out[layer] = max(vals) if vals else math.nan
    return out


def summary_rows(f: StudyFiles) -> List[dict]:
    """One row per init: test accuracy over seeds (``acc``, :class:`~initlab.document.Seeds`: a diverged
    run is counted, not averaged; ``acc_mean`` .. ``acc_max`` from it), steps to 90/97 %, initial loss,
    time."""
    rows = []
    for init, runs in by_init(f.runs).items():
        acc = over_seeds([r["test_acc"] for r in runs], [r["diverged"] for r in runs])
        def steps(key):
            vals = [r[key] for r in runs]
            return None if any(v is None for v in vals) else mean(vals)
        rows.append({
            "init": init, "n": len(runs),
            "acc": acc, "acc_mean": acc.mean, "acc_std": acc.std, "acc_min": acc.lo, "acc_max": acc.hi,
            "steps_to_90": steps("steps_to_90"), "steps_to_97": steps("steps_to_97"),
            "reached_90": sum(r["steps_to_90"] is not None for r in runs),
            "reached_97": sum(r["steps_to_97"] is not None for r in runs),
            "initial_loss": mean([r["initial_loss"] for r in runs]),
            "seconds": mean([r["train_seconds"] for r in runs]),
            "diverged": sum(bool(r["diverged"]) for r in runs),
        })
    order = {name: k for k, name in enumerate(f.inits)}
    return sorted(rows, key=lambda r: order.get(r["init"], 99))
