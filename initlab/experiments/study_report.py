"""The study report, made from the files a study wrote (and nothing else): plots, a summary table and
observations computed from the records. ``write_report(DIR)`` can be run again at any time.

Every observation sentence is built from measured numbers and says which ones; change the data and the
sentences change (tests check that).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import List, Optional, Tuple

from initlab.data import DATASETS
from initlab.document import Document, draw_all, pct
from initlab.document import settings_line as settings_line_of
from initlab.experiments.study_files import (
    StudyFiles,
    by_init,
    finished_only,
    layer_at,
    layer_max_over_run,
    layer_names,
    load,
    summary_rows,
)
from initlab.experiments.study_plots import (
    figure_curves,
    figure_layer_scales,
    figure_weight_grid,
    plot_curves,
    plot_layer_scales,
    plot_weight_grid,
)
from initlab.experiments.study_sentences import (
    QUESTIONS,
    first_moves,
    model_level_sentences,
    moves_sentence,
    observations,
)
from initlab.seeds import count, mean_std

# The names tests and commands import from here; the report's parts live in study_files (the folder's
# tables and numbers), study_sentences (the observations) and study_plots (the figures).
__all__ = ["QUESTIONS", "StudyFiles", "by_init", "figure_curves", "figure_layer_scales", "figure_weight_grid",
           "finished_only", "first_moves", "layer_at", "layer_max_over_run", "layer_names", "load",
           "make_plots", "model_level_sentences", "moves_sentence", "observations", "plot_curves",
           "plot_layer_scales", "plot_weight_grid", "settings_line", "summary_rows", "summary_table",
           "write_report"]


def _steps(row: dict, key: str) -> str:
    v, reached = row[key], row["reached_" + key[-2:]]
    if v is None:
        return f"never ({reached}/{row['n']} seeds)" if reached else "never"
    return f"{v:,.0f}"


def summary_table(f: StudyFiles) -> Tuple[List[str], List[List[str]]]:
    rows = summary_rows(f)
    several = any(r["n"] > 1 for r in rows)
    head = ["init", "test acc (mean ± std)" if several else "test acc", "min", "steps to 90 %",
            "steps to 97 %", "initial loss", "s / model", "diverged"]
    body = []
    for r in rows:
        body.append([r["init"], mean_std(r["acc"], unit=" %"),
                     pct(r["acc_min"]), _steps(r, "steps_to_90"), _steps(r, "steps_to_97"),
                     f"{r['initial_loss']:.3g}", f"{r['seconds']:.1f}", f"{r['diverged']}/{r['n']}"])
    return head, body


# --------------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------------

def settings_line(f: StudyFiles) -> str:
    """What was trained, from the config and the runs' own records: images actually used, steps,
    LeNet-5's pool and C3 table, the bias init."""
    c, t = f.config, f.config.get("train", {})
    seeds = sorted({r["seed"] for r in f.runs})
    dataset = c.get("dataset", "mnist")
    available = DATASETS.get(dataset).train_size if dataset in DATASETS else None
    size = t.get("train_size") or available
    if size and available:
        size = min(size, available)
    steps = sorted({r["steps"] for r in f.runs if r.get("steps") is not None})
    steps_text = (f"{steps[0]:,} steps" if len(steps) == 1 else
                  f"{steps[0]:,}-{steps[-1]:,} steps" if steps else "no steps")
    model = str(c.get("model"))
    if model.split(":")[0] == "lenet5":
        model += f" ({c.get('pool', 'avg')} pool, {'C3 table' if c.get('c3_table') else 'full C3'})"
    seeds_text = f"{count(len(seeds), 'seed')} ({', '.join(map(str, seeds))})"
    return settings_line_of(
        f"{model} on {dataset}, activation {c.get('activation')}, "
        f"{t.get('optimizer')} lr {t.get('lr')} ({t.get('schedule')}), batch {t.get('batch_size')}, "
        f"{t.get('epochs')} epoch(s) over {size:,} images ({steps_text}); {seeds_text}; "
        f"bias init {c.get('bias_init')}", f.meta)


def make_plots(f: StudyFiles) -> List[Tuple[str, Path]]:
    """The report's figures, [(caption, file)]; the weight grid, the slowest, draws beside the others."""
    grid, curves, scales = draw_all([(partial(plot_weight_grid, f), f.out / "weights.png"),
                                     (partial(plot_curves, f), f.out / "curves.png"),
                                     (partial(plot_layer_scales, f), f.out / "layer_scales.png")])
    plots = [("Accuracy and loss during training", curves),
             ("How the weight distributions move", grid),
             ("Signal scale at initialization and dead units", scales)]
    return [(caption, path) for caption, path in plots if path]


def write_report(out: Path, title: Optional[str] = None, f: Optional[StudyFiles] = None) -> Path:
    """Write report.md and a self-contained report.html into ``out``; returns the HTML path. ``f``:
    the folder's files when the caller has loaded them already; ``title`` by default names the model
    and the dataset."""
    f = f if f is not None else load(out)
    if title is None:
        title = f"initlab study: initialization of {f.config.get('model')} on {f.config.get('dataset')}"
    n_rows = len(f.runs)
    f, partial_runs = finished_only(f)
    every_row_partial = bool(partial_runs) and len(partial_runs) == n_rows
    obs = {key: [] for key in QUESTIONS} if every_row_partial else observations(f)
    failed = f.meta.get("failed") or []
    doc = Document.report(title, settings_line(f), f.meta)
    if failed:
        doc.heading("Failed runs").bullets(failed + ["--resume trains them again."])
    if every_row_partial:
        doc.paragraph("No run finished: every row below is a run stopped part-way (marked interrupted in "
                      "runs.csv), and no sentence is drawn from them. --resume trains them again.")
    elif partial_runs:
        doc.heading("Partial runs (left out of every table and sentence)").bullets(
            [f"{r['init']} seed {r['seed']}: stopped after {r['steps']} steps" for r in partial_runs]
            + ["They stay in runs.csv, marked interrupted; --resume trains them again."])
    doc.heading("Results").table(*summary_table(f))
    doc.paragraph("Steps to 90/97 % use the held-out curve (first record point at or above the "
                  "threshold; mean over seeds, 'never' when a seed never got there). 's / model' is each "
                  "model's share of the batched training time.")
    for key, heading in QUESTIONS.items():
        sentences = obs[key]
        if sentences:
            doc.heading(heading).bullets(sentences)
    doc.heading("Plots")
    for caption, path in make_plots(f):
        doc.image(caption, path)
    doc.files(
        "`runs.csv` (one row per run), `curves.csv`, `layers.csv`, `histograms.csv` (tidy tables), "
        "`config.json` (the resolved configuration), `meta.json` (environment).")
    return doc.write(f.out)
