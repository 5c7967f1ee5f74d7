"""The width report: training loss against log2 lr per width and parametrization (the form of Tensor
Programs V, Fig. 1), the best lr per width and its shift against the seed spread, the coordinate check.

Everything here reads the result folder alone (config.json, meta.json, runs.csv, coord.csv), so
``initlab report`` rebuilds it at any time.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from initlab import files
from initlab.document import Document, figure, grids, mean, save, settings_line, status_note
from initlab.experiments.width import best_lrs, shifts
from initlab.seeds import band, count, has_value

Table = Tuple[List[str], List[List[str]]]
MOVES = 4.0      # "the best lr moved": by at least this factor over the widths
STAYS = 2.0      # "the best lr stayed put": by at most this factor


def best_table(rows: Sequence[dict]) -> Table:
    """Parametrization rows, width columns: the best log2 lr (mean training loss over seeds) and, in
    brackets, the log2 lrs within one seed std of it; then the shift over the widths."""
    best = best_lrs(rows)
    widths = sorted({w for _, w in best})
    moved = shifts(rows)
    body = []
    for p in sorted({p for p, _ in best}):
        cells = []
        for w in widths:
            b = best.get((p, w))
            if b is None:
                cells.append("")
                continue
            spread = b["spread"]
            cells.append(f"2^{b['log2_lr']} ({b['loss']:.3f})"
                         + (f" [2^{spread[0]}..2^{spread[-1]}]" if len(spread) > 1 else ""))
        body.append([p] + cells + [f"{moved[p]['factor']:g}x" if p in moved else ""])
    return ["parametrization"] + [f"width {w}: best lr (loss)" for w in widths] + ["shift"], body


def sentences(rows: Sequence[dict], coord: Sequence[dict], cfg: dict) -> List[str]:
    out = []
    best = best_lrs(rows)
    for p, s in shifts(rows).items():
        ks = s["best"]
        if len(ks) < 2:
            continue
        overlap = set.intersection(*(set(best[(p, w)]["spread"]) for w in ks))
        verdict = ("moved" if s["factor"] >= MOVES else "stayed put" if s["factor"] <= STAYS else "moved a little")
        text = (f"{p}: the best lr {verdict} over the widths ("
                + ", ".join(f"2^{ks[w]} at {w}" for w in sorted(ks)) + f"; {s['factor']:g}x)")
        if overlap and s["factor"] > 1:
            text += (f"; within one seed std of the best, 2^{min(overlap)}..2^{max(overlap)} is near-best at "
                     f"every width, so the shift is within the seed spread")
        elif s["factor"] > 1:
            text += "; no lr is within one seed std of the best at every width: the shift is beyond the seed spread"
        out.append(text + ".")
        losses = [best[(p, w)]["loss"] for w in sorted(ks)]
        if all(b < a for a, b in zip(losses, losses[1:])):
            out.append(f"{p}: at its best lr, every wider net reached a lower training loss "
                       f"({', '.join(f'{v:.3f}' for v in losses)}).")
    if coord:
        last = max(r["step"] for r in coord)
        for p in sorted({r["parametrization"] for r in coord}):
            sizes = {}
            for r in coord:
                if r["parametrization"] == p and r["step"] == last and r["layer"] == "output":
                    sizes.setdefault(r["width"], []).append(r["mean_abs"])
            if len(sizes) < 2:
                continue
            ws = sorted(sizes)
            means = [mean(sizes[w]) for w in ws]
            ratio = means[-1] / means[0] if means[0] > 0 else math.inf
            trend = "grew" if ratio >= 1.5 else "shrank" if ratio <= 1 / 1.5 else "stayed within 1.5x"
            out.append(f"Coordinate check, {p}: the mean |logit| after {last} Adam steps at lr "
                       f"2^{cfg['coord_log2_lr']} {trend} from width {ws[0]} to {ws[-1]} "
                       f"({' / '.join(f'{m:.3f}' for m in means)}; {ratio:.2f}x).")
    return out


def plot_lr_curves(rows: Sequence[dict], path: Path) -> Optional[Path]:
    """Training loss against log2 lr, one curve per width (mean over seeds), a panel per
    parametrization; an lr where a seed diverged has no point (it cannot be the best lr either)."""
    if not rows:
        return None
    import matplotlib

    ps = sorted({r["parametrization"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    cmap = matplotlib.colormaps["viridis"]
    fig, axes = figure(1, len(ps), 5.2 * len(ps), 4.2, sharey=True)
    best = best_lrs(rows)
    for ax, p in zip(axes[0], ps):
        for k, w in enumerate(widths):
            mine = [r for r in rows if (r["parametrization"], r["width"]) == (p, w)]
            if not mine:
                continue
            b = band(mine, "log2_lr", "train_loss")
            gone = {r["log2_lr"] for r in mine if not has_value(r["train_loss"], r["diverged"])}
            colour = cmap(k / max(1, len(widths) - 1))
            ax.plot(b.x, [m if x not in gone else math.nan for x, m in zip(b.x, b.mean)], "o-", color=colour,
                    label=f"width {w}")
            if (p, w) in best:
                ax.plot([best[(p, w)]["log2_lr"]], [best[(p, w)]["loss"]], "*", color=colour, ms=14, mec="black")
        ax.set(title=p, xlabel="log2 learning rate")
    grids(axes)
    axes[0][0].set_ylabel("training loss (mean of the last 100 steps)")
    axes[0][0].legend(fontsize=8)
    finite = [v for v in (r["train_loss"] for r in rows) if v is not None and math.isfinite(v)]
    if finite:
        axes[0][0].set_ylim(min(finite) * 0.9, min(max(finite), 2.5))
    return save(fig, path)


def plot_coord(coord: Sequence[dict], path: Path) -> Optional[Path]:
    """Mean |pre-activation| of every layer against width (mean over seeds), a panel per
    parametrization, a line per step."""
    if not coord:
        return None
    import matplotlib

    ps = sorted({r["parametrization"] for r in coord})
    layers = list(dict.fromkeys(r["layer"] for r in coord))
    steps = sorted({r["step"] for r in coord})
    fig, axes = figure(1, len(ps), 5.2 * len(ps), 4.0, sharey=True)
    styles = ["-", "--", ":"]
    cmap = matplotlib.colormaps["tab10"]
    for ax, p in zip(axes[0], ps):
        for li, layer in enumerate(layers):
            for si, t in enumerate(steps):
                b = band((r for r in coord if (r["parametrization"], r["layer"], r["step"]) == (p, layer, t)),
                         "width", "mean_abs")
                ax.plot(b.x, b.mean, styles[si % 3], marker="o", ms=3, color=cmap(li), label=f"{layer}, step {t}")
        ax.set(title=f"{p}: coordinate check", xlabel="width", xscale="log", yscale="log")
    grids(axes)
    axes[0][0].set_ylabel("mean |pre-activation|")
    axes[0][0].legend(fontsize=6, ncol=2)
    return save(fig, path)


def describe(cfg: dict) -> str:
    return (f"mlp 784-{'-'.join(['w'] * cfg['depth'])}-10 ({cfg['activation']}), init {cfg['init']}, "
            f"{cfg['optimizer']}, batch {cfg['batch_size']}, {cfg['steps']} steps on {cfg['dataset']}, widths "
            f"{', '.join(map(str, cfg['widths']))}, lr 2^{min(cfg['log2_lrs'])}..2^{max(cfg['log2_lrs'])}, base "
            f"width {cfg['base_width']}, {count(cfg['seeds'], 'seed')}")


def _load(out: Path):
    out = Path(out)
    return (files.read_json(out / "config.json"), files.read_json(out / "meta.json"),
            files.read_table(out, "runs"), files.read_table(out, "coord"))


def summary_table(out: Path) -> Table:
    return best_table(_load(out)[2])


def observations(out: Path) -> List[str]:
    cfg, _, rows, coord = _load(out)
    return sentences(rows, coord, cfg)


def write_report(out: Path) -> Path:
    """lr.png, coord.png, report.md and a self-contained report.html, from the folder's files alone."""
    out = Path(out)
    cfg, meta, rows, coord = _load(out)
    doc = Document.report("initlab width: does a tuned learning rate survive a wider net?",
                          settings_line(describe(cfg), meta), meta, status_note(meta, "width", out))
    doc.heading("What was measured").bullets(sentences(rows, coord, cfg))
    doc.heading("Best learning rate per width")
    doc.paragraph("Best: the lr of the least training loss (mean over seeds of the mean of each run's last 100 "
                  "steps); in brackets the lrs whose mean is within one seed std of the best's; shift: "
                  "the factor between the largest and the smallest best lr over the widths.")
    doc.table(*best_table(rows))
    doc.heading("Plots")
    doc.image("Training loss against learning rate (Tensor Programs V, Fig. 1)", plot_lr_curves(rows, out / "lr.png"))
    if rows:
        doc.paragraph("Lines: mean over seeds; star: the best lr; an lr where a seed diverged has no point.")
    doc.image("Coordinate check", plot_coord(coord, out / "coord.png"))
    doc.files("`runs.csv` (one row per run: width, lr, log2_lr, parametrization, seed, "
                                   "train_loss, test_acc, diverged), `coord.csv`, `config.json`, `meta.json`.")
    return doc.write(out)
