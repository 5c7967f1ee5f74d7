"""The probe's report, from its result folder alone: which inits keep the forward signal, how close
the variance formula came, and the per-layer plot.

``spread`` and ``prediction_error`` read ``probe.csv``'s rows (one per init x activation x seed x
layer); every sentence of :func:`observations` is computed from them.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from initlab import files
from initlab.document import Document, colours, grids, log_scale_or_note, save, settings_line
from initlab.document import figure as make_figure
from initlab.init import mean_field
from initlab.seeds import band, count

KEEP_FACTOR = 2.0      # "kept": max/min of the forward std over the hidden layers <= 2



def _finite_pos(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def spread(rows: List[dict]) -> Dict[Tuple[str, str, int], dict]:
    """Per (init, activation, seed), over the hidden layers: ``first``, ``last`` forward std,
    ``ratio`` = last/first, ``maxmin`` = max/min (inf when a std is 0 or not finite), ``kept`` = maxmin <= 2."""
    per: Dict[Tuple[str, str, int], List[dict]] = defaultdict(list)
    for r in rows:
        if r["hidden"]:
            per[(r["init"], r["activation"], r["seed"])].append(r)
    out = {}
    for key, rs in per.items():
        rs.sort(key=lambda r: r["layer"])
        stds = [r["forward_std"] for r in rs]
        ok = all(_finite_pos(s) for s in stds)
        first, last = stds[0], stds[-1]
        ratio = last / first if _finite_pos(first) and _finite_pos(last) else (0.0 if _finite_pos(first) else math.nan)
        maxmin = max(stds) / min(stds) if ok else math.inf
        out[key] = {"first": first, "last": last, "ratio": ratio, "maxmin": maxmin,
                    "kept": maxmin <= KEEP_FACTOR, "layers": len(rs)}
    return out


def prediction_error(rows: List[dict]) -> Dict[Tuple[str, str], float]:
    """Per (init, activation): the largest factor between measured and predicted forward std over all
    layers and seeds (1 = perfect; inf where one of them is 0 or not finite)."""
    worst: Dict[Tuple[str, str], float] = defaultdict(lambda: 1.0)
    for r in rows:
        key = (r["init"], r["activation"])
        m, p = r["forward_std"], r["predicted_std"]
        factor = max(m / p, p / m) if _finite_pos(m) and _finite_pos(p) else math.inf
        worst[key] = max(worst[key], factor)
    return dict(worst)


def geomean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if _finite_pos(x)]
    return math.exp(statistics.fmean(math.log(x) for x in xs)) if xs else math.nan


def num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.1e}"


def ratio_table(rows: List[dict], inits: List[str], activations: List[str]) -> Tuple[List[str], List[List[str]]]:
    """Rows: inits; columns: activations; cell: last/first forward std (geometric mean over seeds), with
    a check mark when max/min over the hidden layers is <= 2 on every seed."""
    sp = spread(rows)
    body = []
    for i in inits:
        cells = [i]
        for a in activations:
            vals = [v for (ii, aa, _), v in sp.items() if ii == i and aa == a]
            if not vals:
                cells.append("")
                continue
            mark = " ✓" if all(v["kept"] for v in vals) else ""
            cells.append(num(geomean([v["ratio"] for v in vals]) if any(_finite_pos(v["ratio"]) for v in vals)
                              else vals[0]["ratio"]) + mark)
        body.append(cells)
    return ["init \\ activation"] + activations, body


def observations(rows: List[dict], inits: List[str], activations: List[str]) -> List[str]:
    """One sentence per activation, from the measured stds: which inits keep the forward signal within
    a factor of 2 over all hidden layers (on every seed), which shrink, which grow; and how close the
    prediction came where it is exact."""
    sp = spread(rows)
    err = prediction_error(rows)
    kind = {r["activation"]: r["prediction"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    depth = max((v["layers"] for v in sp.values()), default=0)
    out = []
    for a in activations:
        kept, shrink, grow, vary = [], [], [], []
        for i in inits:
            vals = [v for (ii, aa, _), v in sp.items() if ii == i and aa == a]
            if not vals:
                continue
            r = geomean([v["ratio"] for v in vals])
            mm = max(v["maxmin"] for v in vals)
            if all(v["kept"] for v in vals):
                kept.append(f"{i} (max/min {num(mm)})")
            elif all(_finite_pos(v["ratio"]) and v["ratio"] < 1 / KEEP_FACTOR for v in vals) or \
                    all(v["ratio"] == 0 for v in vals):
                shrink.append(f"{i} (last/first {num(r if _finite_pos(r) else 0.0)})")
            elif all(_finite_pos(v["ratio"]) and v["ratio"] > KEEP_FACTOR for v in vals):
                grow.append(f"{i} (last/first {num(r)})")
            else:
                vary.append(f"{i} (max/min {num(mm)})")
        parts = [f"{a}: within x{KEEP_FACTOR:g} over all {depth} hidden layers on every seed: "
                 + (", ".join(kept) or "none")]
        if shrink:
            parts.append("shrinks: " + ", ".join(shrink))
        if grow:
            parts.append("grows: " + ", ".join(grow))
        if vary:
            parts.append("varies by more than x2 but ends near its start: " + ", ".join(vary))
        e = [err[(i, a)] for i in inits if (i, a) in err]
        if e:
            finite = [x for x in e if math.isfinite(x)]
            what = "the exact prediction" if kind.get(a) == "exact" else "the mean-field approximation"
            parts.append(f"{what} is within x{num(max(finite))} of the measurement at every layer for "
                         f"{len(finite)} of {len(e)} inits" if finite else
                         f"{what} could not be compared (zero or non-finite stds)")
        out.append("; ".join(parts) + f" ({count(len(seeds), 'seed')}).")
    return out


def phases(rows: List[dict], inits: List[str], activations: List[str]) -> List[str]:
    """One sentence per activation: where each init puts the net in the mean-field picture (Poole et
    al. 2016; :mod:`initlab.init.mean_field`): sigma_w^2 = fan_in Var(w) of its hidden layers (median
    over layers and seeds), biases taken as without variance; ordered, critical or chaotic."""
    out = []
    for a in activations:
        parts = []
        for i in inits:
            vals = sorted(r["fan_in"] * r["weight_var"] for r in rows
                          if r["init"] == i and r["activation"] == a and r["hidden"] and r["layer"] > 1
                          and r["weight_var"] is not None and math.isfinite(r["weight_var"]))
            if not vals:
                continue
            s = vals[len(vals) // 2]
            try:
                where = mean_field.phase(s, 0.0, a, tol=0.02) if s > 0 else "no signal"
            except ValueError:
                where = "beyond the calculator's range"
            parts.append(f"{i} (sigma_w^2 {s:.3g}): {where}")
        if parts:
            out.append(f"{a}, mean-field phase of the hidden layers (biases without variance): "
                       + "; ".join(parts) + ".")
    return out


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def figure(rows: List[dict], inits: List[str], activations: List[str]):
    """Per activation two panels, forward std per layer above the gradient std, up to 4 activations
    side by side; one colour per init; solid = measured (geometric mean over seeds, band = min-max),
    dashed = predicted (dash-dotted where the prediction is the mean-field approximation).
    A matplotlib Figure (not attached to pyplot)."""
    from matplotlib.lines import Line2D

    colors = colours(inits)
    cols = min(4, len(activations))
    blocks = math.ceil(len(activations) / cols)
    height = 3.3 * 2 * blocks + 0.6
    fig, axes = make_figure(2 * blocks, cols, 4.2 * cols, height, rect=(0, 0, 1, 1 - 0.5 / height))
    index: Dict[Tuple[str, str], List[dict]] = defaultdict(list)
    for r in rows:
        index[(r["init"], r["activation"])].append(r)
    for k, a in enumerate(activations):
        block, col = divmod(k, cols)
        for row, (key, pkey, title) in enumerate((("forward_std", "predicted_std", "forward: std of y_l"),
                                                  ("backward_std", "predicted_backward_std",
                                                   "backward: std of dL/dy_l"))):
            ax = axes[2 * block + row][col]
            ax.set_ylabel("std (log scale)", fontsize=8)
            for i in inits:
                mine = index.get((i, a))
                if not mine:
                    continue
                measured = band(mine, "layer", key, geometric=True)
                ax.plot(measured.x, measured.mean, "-", color=colors[i], lw=1.6, label=i)
                ax.fill_between(measured.x, measured.lo, measured.hi, color=colors[i], alpha=0.15, lw=0)
                predicted = band(mine, "layer", pkey, geometric=True)
                style = "--" if mine[0]["prediction"] == "exact" else "-."
                ax.plot(predicted.x, predicted.mean, style, color=colors[i], lw=1.0, alpha=0.9)
            if not log_scale_or_note(ax, f"{a} — {title}: every std is 0 (no signal), nothing to draw "
                                         "on a log axis"):
                continue
            grids(ax)
            ax.set_title(f"{a} — {title}", fontsize=9)
            ax.set_xlabel("layer (last = logits)", fontsize=8)
            ax.tick_params(labelsize=7)
    for k in range(len(activations), blocks * cols):     # empty slots of the last block
        block, col = divmod(k, cols)
        axes[2 * block][col].axis("off")
        axes[2 * block + 1][col].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="k", ls="-"), Line2D([], [], color="k", ls="--"),
                Line2D([], [], color="k", ls="-.")]
    labels += ["measured (band: seeds)", "predicted (exact formula)", "predicted (mean-field approx.)"]
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
    return fig


def plot(rows: List[dict], inits: List[str], activations: List[str], path: Path) -> Path:
    return save(figure(rows, inits, activations), path, dpi=90)



def describe(cfg: dict) -> str:
    """What a probe measured, from its config.json."""
    kind = (f"{cfg['depth']} 3x3 conv layers of {cfg['width']} channels (padding 1)" if cfg.get("conv")
            else f"{cfg['depth']} fully connected layers of {cfg['width']} units")
    first, n = cfg.get("first_seed", 0), cfg.get("seeds", 0)
    return (f"mlp with {kind}, then a linear output layer, no training; {cfg['images']} {cfg['dataset']} "
            f"training images in [0, 1]; loss = cross-entropy summed over the batch; biases "
            f"{cfg.get('bias_init', 0.0):g}; {n} weight draw(s) (seeds {first}..{first + n - 1})")


def run_rows(rows: List[dict]) -> List[dict]:
    """runs.csv: one row per init x activation x seed, the forward std's spread over the hidden layers."""
    return [{"init": i, "activation": a, "seed": s, "first_std": v["first"], "last_std": v["last"],
             "last_over_first": v["ratio"], "max_over_min": v["maxmin"], "kept": v["kept"]}
            for (i, a, s), v in spread(rows).items()]


def write_report(out: Path) -> Path:
    """probe.png, report.md and a self-contained report.html, from the folder's files alone."""
    out = Path(out)
    cfg, meta = files.read_json(out / "config.json"), files.read_json(out / "meta.json")
    rows = files.read_table(out, "probe")
    inits, activations, depth = cfg["inits"], cfg["activations"], cfg["depth"]
    done = meta.get("combinations_done")
    doc = Document.report("initlab probe: signal propagation at initialization", settings_line(describe(cfg), meta),
                          meta, f"Interrupted: {done} of {meta.get('combinations')} init x activation x seed "
                          "combinations were probed; every table and sentence here comes from them only."
                          if meta.get("interrupted") else None)
    doc.heading("Which inits keep the forward signal?")
    doc.paragraph(f"Cells: last/first forward std over the {depth} hidden layers (geometric mean over "
                  f"seeds); ✓ = max/min over those layers <= {KEEP_FACTOR:g} on every seed. With ReLU and "
                  f"fan_in = fan_out = n, xavier's Var(w) = 1/n halves the variance per layer: "
                  f"(1/√2)^{depth - 1} = {num(2 ** (-(depth - 1) / 2))}.")
    doc.table(*ratio_table(rows, inits, activations))
    doc.heading("From the measurement").bullets(observations(rows, inits, activations))
    doc.heading("Where each init stands: order, chaos (initlab criticality)").bullets(
        phases(rows, inits, activations))
    doc.image("Plot", plot(rows, inits, activations, out / "probe.png"), level=2)
    doc.paragraph("Solid: measured (band: min-max over seeds); dashed: the variance formula's prediction "
                  "(exact for linear and (leaky) ReLU forward); dash-dotted: mean-field approximation "
                  "(tanh, sigmoid, SELU). Zero stds are not drawn on the log axis.")
    doc.files("`probe.csv` (one row per init x activation x seed x layer), "
                                   "`runs.csv` (one per init x activation x seed), `config.json`, "
                                   "`meta.json`.")
    return doc.write(out)
