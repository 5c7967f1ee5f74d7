"""``initlab grid``: init methods x activations, final test accuracy, after Mishkin & Matas (2015, Table 2).

Rows: init methods; columns: activations; a cell is the mean test accuracy over seeds after the
configured training, or ``n/c`` ("not converged") when that mean is below ``NC_ACCURACY`` = 20 % —
twice chance on 10 classes, far below anything a working LeNet-5 reaches after one epoch. A cell where
only some seeds failed shows the mean over all seeds and how many failed, e.g. ``64.1 ± 44.6 (1/3 n/c)``.
A run that diverged (non-finite loss) counts as not converged.

Every activation is one ``study.run_study`` (all inits x seeds of it train as one batched stack). The
grid keeps only the final metrics (``TrainConfig.record = False``: no curves or per-layer records),
which makes it several times faster; ``initlab study`` gives the full record of any one column.

This module also holds the command-line glue of ``initlab probe`` (the science is in ``initlab.probe``):
it imports only the standard library at the top, so building the CLI parser does not import torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

GRID_INITS = ("zeros", "uniform", "normal", "xavier", "kaiming", "orthogonal", "lsuv")
GRID_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "selu")
NC_ACCURACY = 0.20   # below this final test accuracy a run "did not converge" (chance is 0.10)


# --------------------------------------------------------------------------------------------------
# The n/c rule and the table (pure Python: testable on fabricated rows)
# --------------------------------------------------------------------------------------------------

def converged(test_acc: Optional[float]) -> bool:
    """A run converged when its final test accuracy is a number >= ``NC_ACCURACY``."""
    return test_acc is not None and math.isfinite(test_acc) and test_acc >= NC_ACCURACY


def cell(accs: Sequence[Optional[float]]) -> str:
    """One table cell from the test accuracies of one (init, activation) over seeds.

    Example:
        >>> cell([0.98, 0.982, 0.978])
        '98.00 ± 0.20'
        >>> cell([0.11, 0.098, 0.35])
        'n/c'
        >>> cell([0.98, 0.1, 0.97])
        '68.33 ± 50.52 (1/3 n/c)'
    """
    if not accs:
        return ""
    vals = [a if a is not None and math.isfinite(a) else 0.0 for a in accs]
    mean = statistics.fmean(vals)
    if mean < NC_ACCURACY:
        return "n/c"
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    failed = sum(not converged(a) for a in accs)
    text = f"{100 * mean:.2f} ± {100 * std:.2f}"
    return text + (f" ({failed}/{len(accs)} n/c)" if failed else "")


def grid_table(rows: List[dict], inits: Sequence[str], activations: Sequence[str]
               ) -> Tuple[List[str], List[List[str]]]:
    """(head, body): rows = inits, columns = activations, cells from :func:`cell` (test accuracy, %)."""
    accs: Dict[Tuple[str, str], List[Optional[float]]] = {}
    for r in rows:
        accs.setdefault((r["init"], r["activation"]), []).append(r["test_acc"])
    body = [[i] + [cell(accs.get((i, a), [])) for a in activations] for i in inits]
    return ["init \\ activation"] + list(activations), body


def observations(rows: List[dict], inits: Sequence[str], activations: Sequence[str]) -> List[str]:
    """Sentences from the rows: per activation the best init and the n/c ones."""
    out = []
    for a in activations:
        means = {}
        for i in inits:
            vals = [r["test_acc"] for r in rows if r["init"] == i and r["activation"] == a]
            if vals:
                means[i] = statistics.fmean(v if v is not None and math.isfinite(v) else 0.0 for v in vals)
        if not means:
            continue
        best = max(means, key=means.get)
        nc = [i for i, m in means.items() if m < NC_ACCURACY]
        out.append(f"{a}: best {best} ({100 * means[best]:.2f} %); "
                   + (f"not converged (mean < {100 * NC_ACCURACY:.0f} %): {', '.join(nc)}" if nc
                      else "every init converged"))
    return out


# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------

def preflight(cfg, activations: Sequence[str], dataset) -> None:
    """Build and initialize one model per (init, activation) on 64 real training images before any
    training, so a combination the code cannot do fails in seconds, not after the first columns trained
    (e.g. ``orthogonal`` asks ``calculate_gain`` for ``very_leaky_relu``; ``lsuv`` needs every layer to
    be called as a module)."""
    from . import engine, init, study

    x = engine.to_float_images(dataset.train_images[:64], cfg.train.normalize, "cpu", dataset.mean, dataset.std)
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
                raise study.ConfigError(f"--inits {spec} with activation {a}: {e}") from None


def run_grid(cfg, activations: Sequence[str], dataset=None, progress: bool = True) -> List[dict]:
    """Train every init x seed of ``cfg`` once per activation; return one row per run (grid.csv)."""
    from . import data as data_mod
    from . import study

    if not activations:
        raise study.ConfigError("--activations needs at least one activation")
    ds = dataset if dataset is not None else data_mod.load_dataset(cfg.dataset, cfg.data_dir, quiet=True)
    preflight(cfg, activations, ds)
    rows: List[dict] = []
    for a in activations:
        c = dataclasses.replace(cfg, activation=a, train=dataclasses.replace(cfg.train, record=False))
        res = study.run_study(c, dataset=ds, progress=progress)
        for r in res.runs:
            rows.append({"init": r["init"], "activation": a, "seed": r["seed"], "test_acc": r["test_acc"],
                         "converged": converged(r["test_acc"]) and not r["diverged"],
                         "test_loss": r["test_loss"], "diverged": r["diverged"],
                         "train_seconds": r["train_seconds"], "init_seconds": r.get("init_seconds"),
                         "init_info": r.get("init_info")})
        if res.interrupted:
            break
    return rows


def settings_line(cfg) -> str:
    from . import study

    t = cfg.train
    env = study.environment()
    return (f"{cfg.model} on {cfg.dataset}, {t.optimizer} lr {t.lr} ({t.schedule}), batch {t.batch_size}, "
            f"{t.epochs} epoch(s) over {t.train_size or 'all'} training images, "
            f"test accuracy on the full test split; {cfg.seeds} seeds ({cfg.first_seed}.."
            f"{cfg.first_seed + cfg.seeds - 1}); bias init {cfg.bias_init}; torch {env['torch']}, "
            f"{env['cpu_threads']} CPU threads" + (f", GPU {env['cuda']}" if env.get("cuda") else ""))


def write_grid(out: Path, cfg, activations: Sequence[str], rows: List[dict],
               command: Optional[str] = None, seconds: float = math.nan) -> Path:
    """grid.csv, grid.md, report.html, config.json, meta.json in ``out`` (each atomically)."""
    from . import study
    from .report import _html_table, _md_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    conf = {**study.config_dict(cfg), "activations": list(activations)}
    conf.pop("activation", None)
    study.atomic_write_text(out / "config.json", json.dumps(conf, indent=2) + "\n")
    study.atomic_write_text(out / "meta.json", json.dumps(
        {"environment": study.environment(), "command": command, "seconds": seconds}, indent=2) + "\n")
    study.atomic_write_text(out / "grid.csv", study.rows_to_csv(rows))
    head, body = grid_table(rows, cfg.inits, activations)
    sentences = observations(rows, cfg.inits, activations)
    title = "initlab grid: final test accuracy (%) by init and activation"
    note = (f"Cells: mean ± std over {cfg.seeds} seeds of the final test accuracy, in %; 'n/c' = not "
            f"converged: mean test accuracy < {100 * NC_ACCURACY:.0f} % (chance is 10 %); '(k/n n/c)' = "
            f"k of n seeds below {100 * NC_ACCURACY:.0f} % or diverged.")
    md = [f"# {title}", "", settings_line(cfg) + ".", "", note, "", _md_table(head, body), ""]
    md += [f"- {s}" for s in sentences] + [""]
    if command:
        md += ["Command:", "", f"    {command}", ""]
    md += [f"Time: {seconds:.0f} s." if math.isfinite(seconds) else "", "",
           "Files: `grid.csv` (one row per run), `config.json`, `meta.json`.", ""]
    study.atomic_write_text(out / "grid.md", "\n".join(md))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(settings_line(cfg))}.</p>"
            f"<p>{html.escape(note)}</p>" + _html_table(head, body)
            + "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>"
            + (f"<p>Command: <code>{html.escape(command)}</code></p>" if command else "")
            + "</body></html>")
    study.atomic_write_text(out / "report.html", page)
    return out / "grid.md"


# --------------------------------------------------------------------------------------------------
# Command line: initlab grid, initlab probe
# --------------------------------------------------------------------------------------------------

def _list(values) -> List[str]:
    """'a b', 'a,b' or ['a', 'b'] -> ['a', 'b']; an item with ':' (an init spec) is kept whole."""
    out: List[str] = []
    for v in values:
        out += [str(v)] if ":" in str(v) else [x for x in str(v).replace(",", " ").split() if x]
    return out


def add_parsers(sub) -> None:
    """Add ``grid`` and ``probe`` to the CLI (called once from ``cli.build_parser``)."""
    from . import cli
    from .cli import _bool, add_study_flags

    g = sub.add_parser("grid", help="init x activation table of final test accuracy (n/c where "
                       "training did not converge), Mishkin & Matas 2015 style",
                       description="Train every init x seed once per activation (one batched study per "
                       "activation) and write grid.csv and a table (grid.md, report.html). Takes the "
                       "study flags; --activations replaces --activation.")
    add_study_flags(g)
    if hasattr(cli, "add_workers_flag"):     # the study's --workers (training processes), where it exists
        cli.add_workers_flag(g)
    g.add_argument("--activations", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help=f"activations, the columns (default: {' '.join(GRID_ACTIVATIONS)})")
    g.set_defaults(func=cmd_grid)

    p = sub.add_parser("probe", help="signal propagation at initialization: per-layer std of "
                       "activations and gradients in a deep plain net, next to the variance formula",
                       description="Forward and backward one batch of real images through a deep plain "
                       "net (no training) for every init x activation x seed; write probe.csv, probe.png "
                       "and a report saying which inits keep the signal within a factor of 2.")
    p.add_argument("--inits", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help="initializations (default: uniform normal xavier kaiming lecun_normal "
                   "orthogonal lsuv)")
    p.add_argument("--activations", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help="activations, 'linear' included (default: linear relu leaky_relu "
                   "very_leaky_relu tanh scaled_tanh sigmoid selu)")
    p.add_argument("--width", type=int, metavar="N", help="units per hidden layer, channels with --conv "
                   "(default 256; 32 with --conv)")
    p.add_argument("--depth", type=int, default=20, metavar="N", help="hidden layers (default 20)")
    p.add_argument("--conv", nargs="?", const=True, default=False, type=_bool, metavar="BOOL",
                   help="3x3 convolutions with padding 1 instead of fully connected layers")
    p.add_argument("--images", type=int, metavar="N", help="probe batch (default 512; 32 with --conv, ~5 s per init x activation x seed on 2 cores)")
    p.add_argument("--seeds", type=int, default=3, metavar="N",
                   help="weight draws per init x activation (default 3)")
    p.add_argument("--first-seed", type=int, default=0, metavar="N", help="first seed (default 0)")
    p.add_argument("--bias-init", type=float, default=0.0, metavar="B",
                   help="constant every bias starts at (default 0; B^2 enters the prediction)")
    p.add_argument("--dataset", default="mnist", help="dataset name (default mnist)")
    p.add_argument("--data-dir", help="folder holding the four IDX files")
    p.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>-probe)")
    p.add_argument("--force", action="store_true", help="replace results already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_probe)


def _out(args, command: str, table: str) -> Path:
    from .cli import UsageError, prepare_out

    out = prepare_out(args.out, command, args.force)
    if (out / table).exists() and not args.force:
        raise UsageError(f"--out {out} already holds results; choose another folder or pass --force")
    return out


def _dataset(name: str, data_dir: Optional[str], quiet: bool):
    from . import data as data_mod
    from .cli import UsageError

    try:
        return data_mod.load_dataset(name, data_dir, quiet=quiet)
    except data_mod.DataError as e:
        raise UsageError(str(e)) from None


def cmd_grid(args) -> int:
    from . import study
    from .activations import ACTIVATIONS
    from .cli import UsageError, study_config
    from .report import text_table

    if "activation" in vars(args):
        raise UsageError("grid takes --activations (the columns), not --activation")
    base = study.StudyConfig(inits=list(GRID_INITS))
    cfg = study_config(args, base=base)
    activations = _list(getattr(args, "activations", GRID_ACTIVATIONS))
    for a in activations:
        if a not in ACTIVATIONS:
            raise UsageError(f"unknown activation {a!r}; choose from: {', '.join(ACTIVATIONS.names())}")
    if not activations:
        raise UsageError("--activations needs at least one activation")
    ds = _dataset(cfg.dataset, cfg.data_dir, args.quiet)
    try:
        preflight(cfg, activations, ds)
    except study.ConfigError as e:
        raise UsageError(str(e)) from None
    out = _out(args, "grid", "grid.csv")
    t0 = time.perf_counter()
    rows = run_grid(cfg, activations, dataset=ds, progress=not args.quiet)
    command = "initlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["grid"] else None
    path = write_grid(out, cfg, activations, rows, command=command, seconds=time.perf_counter() - t0)
    print(text_table(*grid_table(rows, cfg.inits, activations)))
    print(f"\ntable: {path}\n       {out / 'report.html'}")
    return 0


def cmd_probe(args) -> int:
    from . import probe, study
    from .cli import UsageError
    from .report import text_table

    cfg = probe.ProbeConfig(depth=args.depth, conv=args.conv, width=args.width, images=args.images,
                            seeds=args.seeds, first_seed=args.first_seed, bias_init=args.bias_init,
                            dataset=args.dataset,
                            data_dir=args.data_dir)
    if "inits" in vars(args):
        cfg.inits = _list(args.inits)
    if "activations" in vars(args):
        cfg.activations = _list(args.activations)
    try:
        probe.validate(cfg)
    except study.ConfigError as e:
        raise UsageError(str(e)) from None
    out = _out(args, "probe", "probe.csv")
    ds = _dataset(cfg.dataset, cfg.data_dir, args.quiet)
    t0 = time.perf_counter()
    rows = probe.run_probe(cfg, dataset=ds, progress=not args.quiet)
    path = probe.write_probe(out, cfg, rows, time.perf_counter() - t0)
    print(text_table(*probe.ratio_table(rows, cfg.inits, cfg.activations)))
    print()
    for s in probe.observations(rows, cfg.inits, cfg.activations):
        print("- " + s)
    print(f"\nreport: {path}\n        {out / 'report.md'}")
    return 0
