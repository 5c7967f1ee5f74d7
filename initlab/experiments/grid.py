"""``initlab grid``: init methods x activations, final test accuracy, after Mishkin & Matas (2015, Table 2).

Rows: init methods; columns: activations; a cell is the mean test accuracy over seeds after the
configured training, or ``n/c`` ("not converged") when that mean is below ``NC_ACCURACY`` = 20 % —
twice chance on 10 classes, far below anything a working LeNet-5 reaches after one epoch. A cell where
only some seeds failed shows the mean over all seeds and how many failed, e.g. ``22.00 ± 6.08 (1/3 n/c)``.
A run that diverged (non-finite loss) has no accuracy: it is left out of the mean and counted,
``97.50 ± 0.71 (1/3 diverged)`` (the report layer's one NaN policy, :func:`initlab.document.mean_std`).

Every activation is one study (all inits x seeds of it train as one batched stack), planned as cells on
the runner (``initlab.runs.runner``: resume, workers, Ray, Ctrl-C). The grid keeps only the final
metrics (``TrainConfig.record = False``: no curves or per-layer records), which makes it several times
faster; ``initlab study`` gives the full record of any one column.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from initlab import engine, files, init
from initlab.document import Document, settings_line, status_note
from initlab.experiments import study, study_tables
from initlab.experiments.limits import check_seeds
from initlab.options import flag
from initlab.seeds import mean_std, over_seeds

GRID_INITS = ("zeros", "uniform", "normal", "xavier", "kaiming", "orthogonal", "lsuv")
GRID_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "selu")
NC_ACCURACY = 0.20   # below this final test accuracy a run "did not converge" (chance is 0.10)


# --------------------------------------------------------------------------------------------------
# The n/c rule and the table (pure Python: testable on fabricated rows)
# --------------------------------------------------------------------------------------------------

def converged(test_acc: Optional[float]) -> bool:
    """A run converged when its final test accuracy is a number >= ``NC_ACCURACY``."""
    return test_acc is not None and math.isfinite(test_acc) and test_acc >= NC_ACCURACY


def cell(accs: Sequence[Optional[float]], diverged: Optional[Sequence[bool]] = None) -> str:
    """One table cell from the test accuracies of one (init, activation) over seeds (None/NaN or a
    ``diverged`` flag: the run diverged), in the report layer's one format.

    Example:
        >>> cell([0.98, 0.982, 0.978])
        '98.00 ± 0.20'
        >>> cell([0.11, 0.098, 0.35])
        'n/c'
        >>> cell([0.98, 0.1, 0.97])
        '68.33 ± 50.52 (1/3 n/c)'
        >>> cell([0.98, float("nan"), 0.97])
        '97.50 ± 0.71 (1/3 diverged)'
    """
    return mean_std(over_seeds(accs, diverged), nc_below=NC_ACCURACY)


def grid_table(rows: List[dict], inits: Sequence[str], activations: Sequence[str]
               ) -> Tuple[List[str], List[List[str]]]:
    """(head, body): rows = inits, columns = activations, cells from :func:`cell` (test accuracy, %)."""
    accs: Dict[Tuple[str, str], List[dict]] = {}
    for r in rows:
        accs.setdefault((r["init"], r["activation"]), []).append(r)
    body = [[i] + [cell([r["test_acc"] for r in rs], [r.get("diverged") for r in rs])
                   for rs in (accs.get((i, a), []) for a in activations)] for i in inits]
    return ["init \\ activation"] + list(activations), body


def observations(rows: List[dict], inits: Sequence[str], activations: Sequence[str]) -> List[str]:
    """Sentences from the rows: per activation the best init, the n/c ones and the diverged ones."""
    out = []
    for a in activations:
        seeds = {}
        for i in inits:
            rs = [r for r in rows if r["init"] == i and r["activation"] == a]
            if rs:
                seeds[i] = over_seeds([r["test_acc"] for r in rs], [r.get("diverged") for r in rs])
        means = {i: s.mean for i, s in seeds.items() if s.n}
        gone = [f"{i} ({s.diverged}/{s.runs} seeds, left out of its mean)" for i, s in seeds.items() if s.diverged]
        if not seeds:
            continue
        best = max(means, key=means.get) if means else None
        nc = [i for i, m in means.items() if m < NC_ACCURACY]
        out.append(f"{a}: " + "; ".join(part for part in (
            f"best {best} ({100 * means[best]:.2f} %)" if best else "",
            f"not converged (mean < {100 * NC_ACCURACY:.0f} %): {', '.join(nc)}" if nc else
            "every init converged" if len(means) == len(seeds) and not gone else "",
            f"diverged: {', '.join(gone)}" if gone else "") if part))
    return out


# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------

def preflight(cfg, activations: Sequence[str], dataset) -> None:
    """Build and initialize one model per (init, activation) on 64 real training images before any
    training, so a combination the code cannot do fails in seconds, not after the first columns trained
    (e.g. ``orthogonal`` asks ``calculate_gain`` for ``very_leaky_relu``; ``lsuv`` needs every layer to
    be called as a module)."""

    x = engine.to_float_images(dataset.train_images[:64], cfg.train.normalize, "cpu", dataset.mean,
                              dataset.std)
    for a in activations:
        c = dataclasses.replace(cfg, activation=a)
        study.validate(c)
        for spec in cfg.inits:
            name, params = init.parse_spec(spec)
            trial = spec
            if "images" in init.init_params(name):          # dbn: a cheap trial pre-training
                trial = init.format_spec(name, {**params, "images": 64})
            try:
                study.build_and_initialize(c, trial, cfg.first_seed, x)
            except (ValueError, KeyError, RuntimeError) as e:
                raise study.ConfigError(f"{flag('inits', spec)} with activation {a}: {e}") from None


@dataclass
class GridConfig:
    """A grid: the study settings of every cell, and the activations that are its columns."""
    study: study.StudyConfig = field(default_factory=lambda: study.StudyConfig(inits=list(GRID_INITS)))
    activations: List[str] = field(default_factory=lambda: list(GRID_ACTIVATIONS))


def validate(cfg: GridConfig) -> None:
    """Raise ConfigError (one line) for the first bad setting, before any training."""
    if not cfg.activations:
        raise study.ConfigError(f"{flag('activations')} needs at least one activation")
    c = cfg.study
    check_seeds(c.seeds, c.first_seed, len(c.inits) * len(cfg.activations),
                      f"{len(c.inits)} inits x {len(cfg.activations)} activations")
    for a in cfg.activations:
        study.validate(dataclasses.replace(cfg.study, activation=a))


def plan(cfg: GridConfig) -> List[study.StudyConfig]:
    """One study per activation (every init x seed of it), keeping only the final metrics."""
    return [dataclasses.replace(cfg.study, activation=a,
                                train=dataclasses.replace(cfg.study.train, record=False))
            for a in cfg.activations]


def to_dict(cfg: GridConfig) -> dict:
    """config.json: the study's settings with ``activations`` in place of ``activation``."""
    conf = {**study_tables.config_dict(cfg.study), "activations": list(cfg.activations)}
    conf.pop("activation", None)
    return conf


def from_dict(d: dict) -> GridConfig:
    return GridConfig(study_tables.config_from_dict(d), list(d.get("activations", GRID_ACTIVATIONS)))


def collect(config: dict, runs: Sequence[dict]) -> Dict[str, List[dict]]:
    """runs.csv (grid.csv holds the same rows, the name earlier versions wrote): one row per finished
    run, in plan order (activation, then seed, then init)."""
    rows = []
    for run in runs:
        r = run["row"]
        rows.append({"init": r["init"], "activation": run["config"]["activation"], "seed": r["seed"],
                     "test_acc": r["test_acc"], "converged": converged(r["test_acc"]) and not r["diverged"],
                     "test_loss": r["test_loss"], "diverged": r["diverged"],
                     "train_seconds": r["train_seconds"], "init_seconds": r.get("init_seconds"),
                     "init_info": r.get("init_info")})
    return {"grid": rows, "runs": rows}


def describe(cfg: dict) -> str:
    """What a grid trained, from its config.json."""
    t = cfg.get("train", {})
    first, n = cfg.get("first_seed", 0), cfg.get("seeds", 0)
    return (f"{cfg.get('model')} on {cfg.get('dataset')}, {t.get('optimizer')} lr {t.get('lr')} "
            f"({t.get('schedule')}), batch {t.get('batch_size')}, {t.get('epochs')} epoch(s) over "
            f"{t.get('train_size') or 'all'} training images, test accuracy on the full test split; "
            f"{n} seeds ({first}..{first + n - 1}); bias init {cfg.get('bias_init')}")


def write_report(out: Path) -> Path:
    """report.md (also as grid.md) and a self-contained report.html, from the folder's files alone."""
    out = Path(out)
    cfg, meta = files.read_json(out / "config.json"), files.read_json(out / "meta.json")
    rows = files.read_table(out, "runs") or files.read_table(out, "grid")
    inits, activations = cfg.get("inits", []), cfg.get("activations", [])
    doc = Document.report("initlab grid: final test accuracy (%) by init and activation",
                          settings_line(describe(cfg), meta), meta, status_note(meta, "grid", out))
    doc.paragraph(f"Cells: mean ± std over {cfg.get('seeds')} seeds of the final test accuracy, in %; "
                  f"'n/c' = not converged: mean test accuracy < {100 * NC_ACCURACY:.0f} % (chance is "
                  f"10 %); '(k/n n/c)' = k of n seeds below {100 * NC_ACCURACY:.0f} %; '(k/n diverged)' = "
                  f"k of n seeds' loss became non-finite: left out of the mean, not counted as 0.")
    doc.table(*grid_table(rows, inits, activations))
    doc.bullets(observations(rows, inits, activations))
    if meta.get("command"):
        doc.paragraph("Command:").code(meta["command"])
    seconds = meta.get("seconds")
    if seconds is not None and math.isfinite(seconds):
        doc.paragraph(f"Time: {seconds:.0f} s.")
    doc.files("`runs.csv` (one row per run; `grid.csv` the same rows), `config.json`, `meta.json`.")
    path = doc.write(out)
    files.atomic_write_text(out / "grid.md", doc.markdown())
    return path
