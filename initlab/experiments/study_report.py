"""The study report, made from the files a study wrote (and nothing else): plots, a summary table and
observations computed from the records. ``write_report(DIR)`` can be run again at any time.

Every observation sentence is built from measured numbers and says which ones; change the data and the
sentences change (tests check that).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from initlab.activations import ACTIVATIONS
from initlab.data import DATASETS
from initlab.document import Document, colours, draw_all, log_scale_or_note, mean, note_panel, pct, std
from initlab.document import settings_line as settings_line_of
from initlab.files import read_json, read_table

LN10 = math.log(10)  # cross-entropy of a uniform guess over 10 classes


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
    """One row per init: accuracy mean/std/min over seeds, steps to 90/97 %, initial loss, time."""
    rows = []
    for init, runs in by_init(f.runs).items():
        accs = [r["test_acc"] for r in runs]
        def steps(key):
            vals = [r[key] for r in runs]
            return None if any(v is None for v in vals) else mean(vals)
        rows.append({
            "init": init, "n": len(runs),
            "acc_mean": mean(accs), "acc_std": std(accs), "acc_min": min(accs), "acc_max": max(accs),
            "steps_to_90": steps("steps_to_90"), "steps_to_97": steps("steps_to_97"),
            "reached_90": sum(r["steps_to_90"] is not None for r in runs),
            "reached_97": sum(r["steps_to_97"] is not None for r in runs),
            "initial_loss": mean([r["initial_loss"] for r in runs]),
            "seconds": mean([r["train_seconds"] for r in runs]),
            "diverged": sum(bool(r["diverged"]) for r in runs),
        })
    order = {name: k for k, name in enumerate(f.inits)}
    return sorted(rows, key=lambda r: order.get(r["init"], 99))


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
        spread = f"± {100 * r['acc_std']:.2f}" if r["n"] > 1 else "(1 seed)"
        body.append([r["init"], f"{pct(r['acc_mean'])} {spread}",
                     pct(r["acc_min"]), _steps(r, "steps_to_90"), _steps(r, "steps_to_97"),
                     f"{r['initial_loss']:.3g}", f"{r['seconds']:.1f}", f"{r['diverged']}/{r['n']}"])
    return head, body


# --------------------------------------------------------------------------------------------------
# Observations: every sentence from the records
# --------------------------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.1e}"


def _final_train_loss(f: StudyFiles, init: str) -> str:
    """', and its running training loss was still X at the end (vs Y for the best init)' or ''."""
    last = {}
    for r in f.curves:
        if r["train_loss"] is not None and not math.isnan(r["train_loss"]):
            key = (r["init"], r["seed"])
            if key not in last or r["step"] > last[key]["step"]:
                last[key] = r
    ends = defaultdict(list)
    for (name, _), r in last.items():
        ends[name].append(r["train_loss"])
    if init not in ends:
        return ""
    best = min(ends, key=lambda n: mean(ends[n]))
    return (f"; its running training loss was still {_fmt(mean(ends[init]))} at the end of training "
            f"(best: {best}, {_fmt(mean(ends[best]))})")


# The lab's two questions: the report's headings, and the keys of ``observations``.
QUESTIONS = {"speed": "Why do better-scaled initializations train faster?",
             "zeros": "Why do all-zero weights stop learning?"}


def observations(f: StudyFiles) -> Dict[str, List[str]]:
    """{"speed": [...], "zeros": [...]}: sentences answering the lab's two questions (``QUESTIONS``)."""
    summary = {r["init"]: r for r in summary_rows(f)}
    layers = layer_names(f)
    hidden = [l for l in layers if l != layers[-1]] if layers else []
    speed: List[str] = []
    zeros: List[str] = []
    if not summary:
        return {"speed": speed, "zeros": zeros}

    # -- which inits trained fastest
    reach = sorted(((r["steps_to_97"], name) for name, r in summary.items() if r["steps_to_97"] is not None))
    never = [name for name, r in summary.items() if r["steps_to_97"] is None]
    if reach:
        parts = [f"{name} ({s:,.0f} steps)" for s, name in reach]
        sentence = "Held-out accuracy reached 97 % fastest with " + ", then ".join(parts)
        sentence += " (mean over seeds)"
        if never:
            sentence += "; " + ", ".join(never) + " never reached 97 % on every seed"
        speed.append(sentence + ".")
    best = max(summary.values(), key=lambda r: r["acc_mean"])
    worst = min(summary.values(), key=lambda r: r["acc_mean"])
    if len(summary) > 1:
        spread = (f", min over {best['n']} seeds {pct(best['acc_min'])}" if best["n"] > 1 else ", 1 seed")
        speed.append(f"Final test accuracy ranges from {pct(worst['acc_mean'])} ({worst['init']}) to "
                     f"{pct(best['acc_mean'])} ({best['init']}{spread}).")

    # -- signal scale at init: activation std from the first to the last hidden layer
    scale = {}
    for name in summary:
        stds = layer_at(f, name, "first", "act_std")
        if hidden and all(not math.isnan(stds.get(l, math.nan)) for l in (hidden[0], hidden[-1])):
            scale[name] = (stds[hidden[0]], stds[hidden[-1]], stds.get(layers[-1], math.nan))
    if scale:
        def kind(first, last):
            if last == 0 or first == 0:
                return "no variation: every image gives the same outputs"
            ratio = last / first
            return "grows" if ratio > 4 else "shrinks" if ratio < 0.25 else "stays within 4x"
        parts = [f"{name}: {_fmt(a)} at {hidden[0]} -> {_fmt(b)} at {hidden[-1]} ({kind(a, b)})"
                 for name, (a, b, _) in scale.items()]
        speed.append("Activation std on the probe batch at initialization, first to last hidden layer — "
                     + "; ".join(parts) + ".")
        logit = {name: v[2] for name, v in scale.items() if not math.isnan(v[2])}
        loss = {name: r["initial_loss"] for name, r in summary.items()}
        hi = max(logit, key=logit.get) if logit else None
        if hi is not None and loss.get(hi, math.nan) > 1.5 * LN10:
            speed.append(
                f"{hi} starts with logits of std {_fmt(logit[hi])} and an initial held-out loss of "
                f"{_fmt(loss[hi])}, {loss[hi] / LN10:.1f}x the {LN10:.3f} of a uniform guess: the "
                f"network is confidently wrong, its softmax saturated"
                + _final_train_loss(f, hi) + ".")
        calm = [name for name, (a, b, _) in scale.items() if kind(a, b) == "stays within 4x"]
        if calm and reach:
            fastest = reach[0][1]
            verdict = "one of them" if fastest in calm else "not one of them"
            speed.append(
                f"Inits whose signal stays within 4x from {hidden[0]} to {hidden[-1]}: "
                f"{', '.join(calm)}; the fastest init to 97 % ({fastest}) is {verdict}. A scale that "
                f"keeps each layer's output variance near its input's (Var(w) = 2/fan_in for ReLU) lets "
                f"every layer receive a useful gradient from the first step.")
    grads = {name: layer_at(f, name, "first", "grad_norm") for name in summary}
    if hidden and len(grads) > 1:
        first_layer = hidden[0]
        vals = {n: g.get(first_layer, math.nan) for n, g in grads.items()}
        vals = {n: v for n, v in vals.items() if not math.isnan(v)}
        if vals:
            parts = [f"{n} {_fmt(v)}" for n, v in sorted(vals.items(), key=lambda kv: -kv[1])]
            speed.append(f"Gradient norm reaching {first_layer} at step 0: " + ", ".join(parts) + ".")

    # -- why all-zero weights stop learning
    for name in summary:
        if not name.startswith("zeros") and not name.startswith("constant"):
            continue
        r = summary[name]
        share = f.meta.get("majority_share", math.nan)
        label = f.meta.get("majority_label", -1)
        pinned = not math.isnan(share) and abs(r["acc_mean"] - share) < 0.005
        dataset = f.config.get("dataset", "mnist")
        classes = DATASETS.get(dataset).classes if dataset in DATASETS else ()
        thing = "digit" if dataset == "mnist" else "class"
        balanced = len(classes) > 0 and not math.isnan(share) and round(share * len(classes), 3) == 1
        if balanced:
            thing = f"class (all {len(classes)} equally common)"
        label_name = classes[label] if 0 <= label < len(classes) and dataset != "mnist" else label
        spread = (f"{pct(r['acc_min'])} test accuracy (1 seed)" if r["n"] == 1 else
                  f"{pct(r['acc_min'])} test accuracy on all {r['n']} seeds" if r["acc_min"] == r["acc_max"]
                  else f"{pct(r['acc_min'])}–{pct(r['acc_max'])} test accuracy over {r['n']} seeds")
        s = f"{name} ended at {spread}"
        if pinned:
            s += (f", which is the share of the most common test {thing} ({label_name}: {pct(share)}): "
                  f"it predicts that one class for every image")
        elif not math.isnan(share):
            s += f" (the most common test {thing}, {label_name}, is {pct(share)} of the test set)"
        zeros.append(s + ".")
        wmax = {l: max(abs(v) for v in (layer_at(f, name, "last", "w_min")[l],
                                         layer_at(f, name, "last", "w_max")[l])) for l in layers}
        stuck = [l for l in layers if wmax[l] == 0]
        moved = [l for l in layers if wmax[l] != 0]
        if stuck:
            zeros.append(f"After {max(rr['steps'] for rr in by_init(f.runs)[name]):,} steps the weights of "
                         f"{', '.join(stuck)} are still exactly 0 (largest |w| = 0)"
                         + (f"; only {', '.join(moved)} moved (largest |w| "
                            + ", ".join(f"{_fmt(wmax[l])}" for l in moved) + ")" if moved else "") + ".")
        gmax = layer_max_over_run(f, name, "grad_norm")
        zero_grad = [l for l in hidden if gmax.get(l) == 0 and l in stuck]   # (moved: it had a gradient)
        if zero_grad:
            zeros.append(f"The gradient norm of {', '.join(zero_grad)} was 0 at every record point: a "
                         f"weight's gradient is its input times the gradient from above, and with the "
                         f"weights above all 0 the gradient from above is 0{_constant_units(f)}, so Adam "
                         f"has nothing to follow"
                         + ("; the output bias alone learns the class prior." if "output" in stuck else "."))
        distinct = layer_at(f, name, "last", "distinct_units")
        same = [l for l in hidden if distinct.get(l) == 1]
        if same:
            split = [l for l in hidden if distinct.get(l, 1) > 1]
            zeros.append(f"Distinct units of {name} at the end: " + ", ".join(
                f"{l} {distinct[l]:.0f}" for l in layers) + ". Units that start identical receive "
                "identical gradients and stay identical: " + (
                    "no hidden layer's symmetry is ever broken"
                    + (f" (the {distinct[layers[-1]]:.0f} output units differ: each logit has its own "
                       "target)." if distinct.get(layers[-1], 1) > 1 else ".") if not split else
                    f"{', '.join(same)} kept a single unit; {', '.join(split)} split into a few only "
                    "through floating-point rounding -- the symmetry is not broken by learning.")
                + ("" if any(n.startswith("constant") for n in summary) else
                   " (--inits constant:value=c measures what a nonzero constant does.)"))
        order = first_moves(f, name)
        if order:
            zeros.append(moves_sentence(name, order, layers))
    for name in summary:
        if not name.startswith("zero_one"):
            continue
        start = layer_at(f, name, "first", "distinct_units")
        end = layer_at(f, name, "last", "distinct_units")
        grew = [l for l in layers if end.get(l, 0) > start.get(l, 0)]
        zeros.append(f"{name} (ZerO) is deterministic too, yet ended at {pct(summary[name]['acc_mean'])} "
                     "test accuracy (mean over seeds). Distinct units at step 0: "
                     + ", ".join(f"{l} {start[l]:.0f}" for l in layers if l in start) + "; at the end: "
                     + ", ".join(f"{l} {end[l]:.0f}" for l in layers if l in end)
                     + (f". Units of {', '.join(grew)} that started equal came apart: the Hadamard "
                        "signs give them different weights above, hence different gradients -- structure "
                        "breaks the symmetry that chance breaks for the random inits." if grew else "."))
    speed += model_level_sentences(f)
    return {"speed": speed, "zeros": zeros}


def model_level_sentences(f: StudyFiles) -> List[str]:
    """What the data-dependent inits did before training, from runs.csv's init_info: the DBN's
    pre-training time and each RBM's reconstruction error, LSUV's rescaling."""
    out = []
    for init, runs in by_init(f.runs).items():
        infos = []
        for r in runs:
            try:
                infos.append(json.loads(r.get("init_info") or "{}"))
            except (TypeError, ValueError):
                continue
        dbn = [i for i in infos if "pretrain_seconds" in i]
        if dbn:
            layers = dbn[0].get("rbm", [])
            errors = "; ".join(f"{x['layer']} {x['recon_error_start']:.3g} -> {x['recon_error_end']:.3g}"
                               for x in layers if "layer" in x)
            out.append(f"{init} pre-trained {len(layers)} RBM(s) before training, "
                       f"{mean([i['pretrain_seconds'] for i in dbn]):.1f} s per run (mean over {len(dbn)} "
                       f"seed{'s' if len(dbn) != 1 else ''}; init time, not part of 's / model')"
                       + (f"; reconstruction error per visible unit, first seed, before -> after: {errors}"
                          if errors else "") + ".")
        lsuv = [i for i in infos if "lsuv_var" in i]
        if lsuv:
            var = lsuv[0]["lsuv_var"]
            iters = lsuv[0].get("lsuv_iters", {})
            out.append(f"{init} rescaled each layer until its output variance was near 1 on one batch (first "
                       f"seed): " + ", ".join(f"{layer} {v:.3f} after {iters.get(layer, '?')} rescale(s)"
                                               for layer, v in var.items()) + ".")
    return out


def _constant_units(f: StudyFiles) -> str:
    """'; every hidden unit outputs relu(0) = 0 for every image' for the study's activation and
    constant bias (nothing for a random bias: its units differ)."""
    b = f.config.get("bias_init", 0.0)
    name = f.config.get("activation", "relu")
    if not isinstance(b, (int, float)) or name not in ACTIVATIONS:
        return ""
    value = float(ACTIVATIONS.get(name).fn(torch.tensor(float(b))))
    return f"; every hidden unit outputs {name}({b:g}) = {value:.4g} for every image"


def moves_sentence(name: str, order: List[Tuple[str, int]], layers: List[str]) -> str:
    """Which layers' weights left 0 at which record step, and whether that went from the top down."""
    steps: Dict[int, List[str]] = defaultdict(list)
    for layer, step in order:
        steps[step].append(layer)
    text = "; ".join(f"{', '.join(ls)} at step {s:,}" for s, ls in sorted(steps.items()))
    s = f"{name}: the weights left 0 -- {text} (first record point with a nonzero weight, first seed)"
    if len(steps) == 1:
        return s + ("; every layer moved between two record points: --record-every 4 resolves the first "
                    "steps one by one.")
    depth = {l: k for k, l in enumerate(layers)}
    top_down = all(depth[a] >= depth[b] for (a, sa), (b, sb) in zip(order, order[1:]) if sa < sb)
    return s + ("; learning works down from the top: a layer's weight gradient is its input times the "
                "gradient from above, which is 0 until the layers above have moved." if top_down else
                "; the order is not top-down.")


def first_moves(f: StudyFiles, init: str) -> List[Tuple[str, int]]:
    """For a run whose weights all start at exactly 0: (layer, first record step with a nonzero
    weight), in the order the layers moved (the first seed's run; [] when a weight started nonzero)."""
    rows = [r for r in f.layers if r["init"] == init]
    if not rows:
        return []
    run = min(r["run"] for r in rows if r["seed"] == min(rr["seed"] for rr in rows))
    rows = sorted((r for r in rows if r["run"] == run), key=lambda r: r["step"])
    first_step = rows[0]["step"]
    if any(max(abs(r["w_min"]), abs(r["w_max"])) != 0 for r in rows if r["step"] == first_step):
        return []
    moved: Dict[str, int] = {}
    for r in rows:
        if r["layer"] not in moved and max(abs(r["w_min"]), abs(r["w_max"])) != 0:
            moved[r["layer"]] = r["step"]
    return sorted(moved.items(), key=lambda kv: kv[1])


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------

def _band(f: StudyFiles, key: str):
    """{init: (steps, mean, lo, hi)} over seeds for a curves.csv column."""
    out = {}
    for init, rows in by_init(f.curves).items():
        per_step: Dict[int, List[float]] = defaultdict(list)
        for r in rows:
            if r[key] is not None and not math.isnan(r[key]):
                per_step[r["step"]].append(r[key])
        steps = sorted(per_step)
        out[init] = (steps, [mean(per_step[s]) for s in steps], [min(per_step[s]) for s in steps],
                     [max(per_step[s]) for s in steps])
    return out


def _figure(rows: int, cols: int, width: float, height: float, left: float = 0.75, right: float = 0.2,
            bottom: float = 0.6, top: float = 0.45, wgap: float = 0.7, hgap: float = 0.5, **kw):
    """A matplotlib Figure (no pyplot: its import and figure manager cost ~0.3 s) with a grid of axes
    and fixed margins, in inches. ``tight_layout`` would find margins by measuring every tick label
    of every panel -- on the 5 x 5 weight grid, 1.5 s of a 2 s report."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    aw = (width - left - right - wgap * (cols - 1)) / cols
    ah = (height - bottom - top - hgap * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wgap / aw, hspace=hgap / ah)
    return fig, axes


def figure_curves(f: StudyFiles):
    """Held-out accuracy (whole range and top end) and training loss against step, per init: the mean
    over seeds as a line, min–max as a band. A matplotlib Figure (not attached to pyplot)."""
    colors = colours(f.inits)
    fig, grid = _figure(1, 3, 16, 4.6, left=0.7, wgap=0.75)
    axes = grid[0]
    acc = _band(f, "heldout_acc")
    loss = _band(f, "train_loss")
    n_seeds = len({r["seed"] for r in f.runs})
    for init in f.inits:
        if init not in acc:
            continue
        steps, mean, lo, hi = acc[init]
        for ax in axes[:2]:
            ax.plot(steps, mean, color=colors[init], label=init, lw=1.8)
            ax.fill_between(steps, lo, hi, color=colors[init], alpha=0.2, lw=0)
        if init in loss and loss[init][0]:
            s2, m2, l2, h2 = loss[init]
            axes[2].plot(s2, m2, color=colors[init], label=init, lw=1.8)
            axes[2].fill_between(s2, l2, h2, color=colors[init], alpha=0.2, lw=0)
    top = max((max(hi) for _, _, _, hi in acc.values() if hi), default=1.0)
    low = 0.9 if top >= 0.92 else max(0.0, math.floor(100 * (top - 0.15)) / 100)  # the run's own top end
    axes[0].set(title="Held-out accuracy", xlabel="step", ylabel="accuracy", ylim=(0, 1))
    axes[1].set(title="Held-out accuracy, top end", xlabel="step", ylim=(low, min(1.0, max(top + 0.01, low + 0.05))))
    axes[2].set(title="Training loss (running mean)", xlabel="step", ylabel="cross-entropy")
    log_scale_or_note(axes[2], "no training loss recorded")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(title=f"init (line: mean, band: min–max of {n_seeds} seeds)", fontsize=8,
                   title_fontsize=8, loc="center right")
    return fig


def plot_curves(f: StudyFiles, path: Path) -> Path:
    figure_curves(f).savefig(path, dpi=110)
    return path


def figure_weight_grid(f: StudyFiles, seed: Optional[int] = None):
    """Rows: inits. Columns: layers. Each panel overlays the weight histogram at several moments of
    training, light (start) to dark (end), on the layer's fixed bins. The panels share one y axis
    (share of weights, log scale, 1e-4 to 1.2), labelled once per row. A matplotlib Figure, or None
    without histograms; ``seed``: whose weights (default the first)."""
    if not f.hists:
        return None
    import matplotlib
    from matplotlib.ticker import LogLocator, MaxNLocator, NullLocator

    seed = min(r["seed"] for r in f.hists) if seed is None else seed
    rows = [r for r in f.hists if r["seed"] == seed]
    layers = []
    for r in rows:
        if r["layer"] not in layers:
            layers.append(r["layer"])
    inits = [i for i in f.inits if any(r["init"] == i for r in rows)]
    steps = sorted({r["step"] for r in rows})
    fig, axes = _figure(len(inits), len(layers), 3.1 * len(layers), 2.2 * len(inits) + 0.6,
                        left=0.85, top=0.95, bottom=0.5, wgap=0.25, hgap=0.35, sharey=True)
    cmap = matplotlib.colormaps["viridis_r"]
    index: Dict[Tuple[str, str, int], List[dict]] = defaultdict(list)
    for r in rows:
        index[(r["init"], r["layer"], r["step"])].append(r)
    for a, init in enumerate(inits):
        for b, layer in enumerate(layers):
            ax = axes[a][b]
            for k, step in enumerate(steps):
                bins = index.get((init, layer, step))
                if not bins:
                    continue
                centers = [(x["bin_left"] + x["bin_right"]) / 2 for x in bins]
                total = sum(x["count"] for x in bins) or 1
                shade = cmap(0.15 + 0.85 * k / max(1, len(steps) - 1))
                ax.plot(centers, [x["count"] / total for x in bins], color=shade,
                        lw=1.3, label=f"step {step}")
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4))     # fewer ticks: the grid draws ~40 % faster
            if b > 0:
                ax.tick_params(left=False)                 # the row's first panel carries the y axis
            if a == 0:
                ax.set_title(layer, fontsize=10)
            if b == 0:
                ax.set_ylabel(f"{init}\nshare of weights", fontsize=8)
            if a == len(inits) - 1:
                ax.set_xlabel("weight value", fontsize=8)
    first = axes[0][0]
    first.set_yscale("log")          # shared by every panel, as are the limits and ticks
    first.set_ylim(1e-4, 1.2)
    first.yaxis.set_major_locator(LogLocator(numticks=5))
    first.yaxis.set_minor_locator(NullLocator())
    handles, labels = first.get_legend_handles_labels()
    fig.suptitle(f"Weight distributions during training (seed {seed}); light = start, dark = end",
                 y=1 - 0.12 / fig.get_figheight(), va="top", fontsize=11)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.38 / fig.get_figheight()),
               ncol=min(len(labels), 9), fontsize=8, frameon=False)
    return fig


def plot_weight_grid(f: StudyFiles, path: Path, seed: Optional[int] = None) -> Optional[Path]:
    fig = figure_weight_grid(f, seed)
    if fig is None:
        return None
    fig.savefig(path, dpi=90)
    return path


RELU_LIKE = ("relu", "leaky_relu", "very_leaky_relu")   # activations whose units can be dead (exactly 0)


def figure_layer_scales(f: StudyFiles):
    """At init: activation std and gradient norm per layer (log scale), and dead-ReLU fraction over
    training for the first hidden layer. A matplotlib Figure, or None without layer records."""
    if not f.layers:
        return None
    colors = colours(f.inits)
    layers = layer_names(f)
    fig, grid = _figure(1, 3, 16, 4.4, left=0.7, wgap=0.75)
    axes = grid[0]
    for init in f.inits:
        acts = layer_at(f, init, "first", "act_std")
        grads = layer_at(f, init, "first", "grad_norm")
        ys = [acts.get(l, math.nan) for l in layers]
        axes[0].plot(layers, [y if y and y > 0 else math.nan for y in ys], "o-", color=colors[init], label=init)
        gs = [grads.get(l, math.nan) for l in layers]
        axes[1].plot(layers, [g if g and g > 0 else math.nan for g in gs], "o-", color=colors[init], label=init)
        dead = _dead_curve(f, init)
        if dead[0]:
            axes[2].plot(dead[0], dead[1], color=colors[init], label=init)
    axes[0].set(title="Activation std at initialization (probe batch)", ylabel="std")
    axes[1].set(title="Gradient norm per layer at step 0", ylabel="L2 norm")
    axes[2].set(title="Dead ReLUs, all hidden layers (mean over seeds)", xlabel="step",
                ylabel="fraction of units never > 0", ylim=(-0.02, 1.02))
    drawn = [log_scale_or_note(axes[0], "every activation std is 0 at initialization: nothing to draw "
                               "on a log axis"),
             log_scale_or_note(axes[1], "every gradient norm is 0 at step 0: nothing to draw on a log axis")]
    if not axes[2].lines:
        note_panel(axes[2], f"no dead units to count: {f.config.get('activation', 'this activation')} "
                            "units are never exactly 0" if f.config.get("activation") not in RELU_LIKE
                   else "no dead-unit records")
    for ax in axes:
        ax.grid(alpha=0.3)
    if drawn[0]:
        axes[0].legend(fontsize=8)
        axes[0].text(0.01, 0.01, "zero-valued points are not drawn on a log axis",
                     transform=axes[0].transAxes, fontsize=7, color="gray")
    return fig


def plot_layer_scales(f: StudyFiles, path: Path) -> Optional[Path]:
    fig = figure_layer_scales(f)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    return path


def _dead_curve(f: StudyFiles, init: str):
    per_step: Dict[int, List[float]] = defaultdict(list)
    layers = layer_names(f)
    for r in f.layers:
        if r["init"] == init and r["layer"] != layers[-1] and r.get("dead_frac") is not None \
                and not math.isnan(r["dead_frac"]):
            per_step[r["step"]].append(r["dead_frac"])
    steps = sorted(per_step)
    return steps, [mean(per_step[s]) for s in steps]


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
    seeds_text = (f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})")
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
    note = (" (interrupted: only the runs recorded so far)" if f.meta.get("interrupted") else
            f" ({len(failed)} run{'s' if len(failed) != 1 else ''} failed: not in the tables)" if failed else "")
    doc = Document(title + note, settings_line(f))
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
    doc.heading("Files").paragraph(
        "`runs.csv` (one row per run), `curves.csv`, `layers.csv`, `histograms.csv` (tidy tables), "
        "`config.json` (the resolved configuration), `meta.json` (environment).")
    return doc.write(f.out)
