"""The study report's figures: curves over seeds, the weight histograms, the signal scale per layer."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from initlab.document import colours, figure, grids, log_scale_or_note, note_panel, save
from initlab.experiments.study_files import StudyFiles, layer_at, layer_names
from initlab.seeds import band, bands


def figure_curves(f: StudyFiles):
    """Held-out accuracy (whole range and top end) and training loss against step, per init: the mean
    over seeds as a line, min–max as a band. A matplotlib Figure (not attached to pyplot)."""
    colors = colours(f.inits)
    fig, grid = figure(1, 3, 16, 4.6, margins={"left": 0.7, "wgap": 0.75})
    axes = grid[0]
    acc = bands(f.curves, "init", "step", "heldout_acc")
    loss = bands(f.curves, "init", "step", "train_loss")
    n_seeds = len({r["seed"] for r in f.runs})
    for init in f.inits:
        if init not in acc:
            continue
        for ax, b in ((axes[0], acc[init]), (axes[1], acc[init]), (axes[2], loss.get(init))):
            if b is not None:
                ax.plot(b.x, b.mean, color=colors[init], label=init, lw=1.8)
                ax.fill_between(b.x, b.lo, b.hi, color=colors[init], alpha=0.2, lw=0)
    top = max((max(b.hi) for b in acc.values()), default=1.0)
    low = 0.9 if top >= 0.92 else max(0.0, math.floor(100 * (top - 0.15)) / 100)  # the run's own top end
    axes[0].set(title="Held-out accuracy", xlabel="step", ylabel="accuracy", ylim=(0, 1))
    axes[1].set(title="Held-out accuracy, top end", xlabel="step", ylim=(low, min(1.0, max(top + 0.01, low + 0.05))))
    axes[2].set(title="Training loss (running mean)", xlabel="step", ylabel="cross-entropy")
    log_scale_or_note(axes[2], "no training loss recorded")
    grids(axes)
    axes[0].legend(title=f"init (line: mean, band: min–max of {n_seeds} seeds)", fontsize=8,
                   title_fontsize=8, loc="center right")
    return fig


def plot_curves(f: StudyFiles, path: Path) -> Path:
    return save(figure_curves(f), path, dpi=110)


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
    fig, axes = figure(len(inits), len(layers), 3.1 * len(layers), 2.2 * len(inits) + 0.6, sharey=True,
                       margins={"left": 0.85, "top": 0.95, "bottom": 0.5, "wgap": 0.25, "hgap": 0.35})
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
    return save(fig, path, dpi=90)


RELU_LIKE = ("relu", "leaky_relu", "very_leaky_relu")   # activations whose units can be dead (exactly 0)


def figure_layer_scales(f: StudyFiles):
    """At init: activation std and gradient norm per layer (log scale), and dead-ReLU fraction over
    training for the first hidden layer. A matplotlib Figure, or None without layer records."""
    if not f.layers:
        return None
    colors = colours(f.inits)
    layers = layer_names(f)
    fig, grid = figure(1, 3, 16, 4.4, margins={"left": 0.7, "wgap": 0.75})
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
    grids(axes)
    if drawn[0]:
        axes[0].legend(fontsize=8)
        axes[0].text(0.01, 0.01, "zero-valued points are not drawn on a log axis",
                     transform=axes[0].transAxes, fontsize=7, color="gray")
    return fig


def plot_layer_scales(f: StudyFiles, path: Path) -> Optional[Path]:
    fig = figure_layer_scales(f)
    if fig is None:
        return None
    return save(fig, path, dpi=110)


def _dead_curve(f: StudyFiles, init: str):
    """(steps, mean over seeds and hidden layers of the dead-unit fraction)."""
    layers = layer_names(f)
    b = band((r for r in f.layers if r["init"] == init and r["layer"] != layers[-1]), "step", "dead_frac")
    return b.x, b.mean
