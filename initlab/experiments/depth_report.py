"""The depth report, from its result folder alone: accuracy against depth per init and learning rate,
the training loss of the deepest nets, their signal at initialization next to the variance formula,
and sentences computed from those numbers (the deepest depth each init still trains at)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from initlab import files
from initlab.document import Document, colours, mean, settings_line, status_note, std
from initlab.experiments import grid, probe_report

REACH = 0.90        # "trains": mean final test accuracy at or above this
STALLED = grid.NC_ACCURACY   # "stalled": mean final test accuracy below this (chance is 10 %)


def accuracy(runs: Sequence[dict]) -> Dict[Tuple[float, str, int], List[float]]:
    """{(lr, init, depth): final test accuracies over seeds}; a diverged run counts as 0."""
    out: Dict[Tuple[float, str, int], List[float]] = defaultdict(list)
    for r in runs:
        acc = r["test_acc"]
        ok = acc is not None and math.isfinite(acc) and not r.get("diverged")
        out[(r["lr"], r["init"], r["depth"])].append(acc if ok else 0.0)
    return out


def depth_table(runs: Sequence[dict], inits: Sequence[str], depths: Sequence[int],
                lr: float) -> Tuple[List[str], List[List[str]]]:
    """Rows: inits; columns: depths; cells: mean ± std of the final test accuracy (%), n/c below 20 %."""
    acc = accuracy(runs)
    gone = {d: diverged(runs, lr, d) for d in depths}
    body = [[i] + ["diverged" if i in gone[d] and gone[d][i][0] == gone[d][i][1] else
                   grid.cell(acc.get((lr, i, d), [])) for d in depths] for i in inits]
    return ["init \\ depth"] + [str(d) for d in depths], body


def diverged(runs: Sequence[dict], lr: float, depth: int) -> Dict[str, Tuple[int, int, int]]:
    """{init: (seeds diverged, seeds run, first step a loss was not finite)} at one lr and depth, for
    the inits with at least one diverged seed."""
    seeds: Dict[str, List[dict]] = defaultdict(list)
    for r in runs:
        if r["lr"] == lr and r["depth"] == depth:
            seeds[r["init"]].append(r)
    out = {}
    for init, rows in seeds.items():
        bad = [r for r in rows if r.get("diverged")]
        if bad:
            steps = [int(r["diverged_step"]) for r in bad if r.get("diverged_step") not in (None, "")]
            out[init] = (len(bad), len(rows), min(steps) if steps else -1)
    return out


def deepest_reaching(runs: Sequence[dict], init: str, lr: float, threshold: float = REACH) -> Optional[int]:
    """The deepest depth at which ``init``'s mean test accuracy reached ``threshold``, provided every
    shallower depth trained did too (None: not even the shallowest)."""
    acc = accuracy(runs)
    depths = sorted(d for (l, i, d) in acc if l == lr and i == init)
    best = None
    for d in depths:
        if mean(acc[(lr, init, d)]) < threshold:
            break
        best = d
    return best


def observations_from(runs: Sequence[dict], probe_rows: Sequence[dict], cfg: dict) -> List[str]:
    """Sentences from the measurements: how deep each init trains, at each learning rate; which inits
    stall at the deepest depth; whether the ranking survives the learning rate; and the signal each
    init passes through the deepest net at initialization."""
    inits, lrs = cfg["inits"], cfg["lrs"]
    acc = accuracy(runs)
    depths = sorted({r["depth"] for r in runs})
    if not depths:
        return []
    deepest = depths[-1]
    seeds = len({r["seed"] for r in runs})
    out = []
    reach = {lr: {i: deepest_reaching(runs, i, lr) for i in inits} for lr in lrs}
    for lr in lrs:
        parts = [f"{i}: {('depth ' + str(d)) if d else 'not even depth ' + str(depths[0])}"
                 for i, d in reach[lr].items()]
        out.append(f"lr {lr:g}: deepest depth at which each init still reaches {100 * REACH:.0f} % "
                   f"(mean over {seeds} seed{'s' if seeds != 1 else ''}) -- " + "; ".join(parts) + ".")
        at_deep = {i: mean(acc[(lr, i, deepest)]) for i in inits if (lr, i, deepest) in acc}
        blew_up = {i: d for i, d in diverged(runs, lr, deepest).items() if i in at_deep}
        stalled = [f"{i} ({100 * a:.2f} %)" for i, a in at_deep.items() if a < STALLED and i not in blew_up]
        trained = [f"{i} ({100 * a:.2f} %)" for i, a in at_deep.items() if a >= REACH]
        gone = [f"{i} ({n} of {total} seeds, first at step {step})" for i, (n, total, step) in blew_up.items()]
        if stalled or trained or gone:
            out.append(f"lr {lr:g}, {deepest} layers: " + "; ".join(
                part for part in (f"trains: {', '.join(trained)}" if trained else "",
                                  f"stalls near chance: {', '.join(stalled)}" if stalled else "",
                                  f"diverges (loss not finite): {', '.join(gone)}" if gone else "") if part)
                + ".")
    if len(lrs) > 1:
        # deepest depth reaching 90 % first, then the accuracy at the deepest depth
        best = {lr: max(inits, key=lambda i: (reach[lr][i] or 0, mean(acc.get((lr, i, deepest), []))))
                for lr in lrs}
        lead = {lr: _lead(acc, lr, inits, best[lr], deepest) for lr in lrs}
        leads = "; ".join(f"lr {lr:g}: {text}" for lr, text in lead.items() if text)
        if len(set(best.values())) == 1:
            out.append(f"The init that trains best at depth is {best[lrs[0]]} at every learning rate tried "
                       f"({', '.join(f'{lr:g}' for lr in lrs)})" + (f" ({leads})" if leads else "") + ".")
        else:
            out.append("The init that trains best at depth changes with the learning rate: "
                       + ", ".join(f"lr {lr:g}: {best[lr]}" for lr in lrs) + (f" ({leads})" if leads else "")
                       + ".")
    spread = probe_report.spread(list(probe_rows))
    if spread:
        ratios = {}
        for (i, _, _), v in spread.items():
            ratios.setdefault(i, []).append(v["ratio"])
        kept = [i for i in inits if all(v["kept"] for (ii, _, _), v in spread.items() if ii == i)]
        text = ", ".join(f"{i} {probe_report.num(probe_report.geomean(ratios[i]))}"
                         if math.isfinite(probe_report.geomean(ratios[i])) and probe_report.geomean(ratios[i]) > 0
                         else f"{i} (no signal)" for i in inits if i in ratios)
        factor = probe_report.KEEP_FACTOR
        ratio = {i: probe_report.geomean(ratios[i]) for i in inits if i in ratios}
        silent = [i for i, r in ratio.items() if not (math.isfinite(r) and r > 0)]
        shrinks = [i for i, r in ratio.items() if i not in silent and r < 1 / factor]
        grows = [i for i, r in ratio.items() if i not in silent and r > factor]
        why = []
        at_deep = {i: mean(acc[(lr, i, deepest)]) for lr in lrs[:1] for i in inits if (lr, i, deepest) in acc}
        contrast = any(at_deep.get(i, 0) >= REACH for i in kept)
        shrinks = [i for i in shrinks if at_deep.get(i, 1) < REACH] if contrast else []
        grows = [i for i in grows if at_deep.get(i, 1) < REACH] if contrast else []
        if shrinks:
            why.append(f"a signal that shrinks geometrically with depth ({', '.join(shrinks)}) gives the first "
                       f"layers a vanishing gradient, so they barely move in one epoch")
        if silent:
            why.append(f"no signal passes at all with {', '.join(silent)} (every hidden output is the same for "
                       f"every image), so at the first step no layer below the output gets a gradient")
        if grows:
            why.append(f"one that grows ({', '.join(grows)}) starts with huge logits and gradients, which "
                       f"a fixed learning rate turns into divergence or a stall")
        out.append(f"At initialization, last/first forward std over the {max(cfg['depths'])} "
                   f"hidden layers: {text}; within x{factor:g} at every layer: {', '.join(kept) or 'none'}."
                   + (" " + _sentence("; ".join(why)) if why else ""))
    return out


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _lead(acc, lr: float, inits: Sequence[str], best: str, depth: int) -> str:
    """How far ``best`` is ahead of the runner-up at ``depth``, and whether beyond the seed spread."""
    others = [i for i in inits if i != best and (lr, i, depth) in acc]
    if not others or (lr, best, depth) not in acc:
        return ""
    second = max(others, key=lambda i: mean(acc[(lr, i, depth)]))
    a, b = acc[(lr, best, depth)], acc[(lr, second, depth)]
    gap = 100 * (mean(a) - mean(b))
    if min(len(a), len(b)) < 2:
        return f"{gap:.2f} points ahead of {second} at {depth} layers (1 seed: no spread)"
    beyond = gap > 100 * max(std(a), std(b))
    return (f"{gap:.2f} points ahead of {second} at {depth} layers, "
            f"{'beyond' if beyond else 'within'} the seed spread")


def plot_depth(runs: Sequence[dict], cfg: dict, path: Path) -> Path:
    """Per learning rate: final test accuracy against depth, one line per init (band: min-max over
    seeds); then the training loss of the deepest nets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits, lrs = cfg["inits"], cfg["lrs"]
    colors = colours(inits)
    acc = accuracy(runs)
    depths = sorted({r["depth"] for r in runs})
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.4 * len(lrs), 4.2), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for i in inits:
            ds = [d for d in depths if (lr, i, d) in acc]
            if not ds:
                continue
            ax.plot(ds, [mean(acc[(lr, i, d)]) for d in ds], "o-", color=colors[i], label=i, lw=1.6)
            ax.fill_between(ds, [min(acc[(lr, i, d)]) for d in ds], [max(acc[(lr, i, d)]) for d in ds],
                            color=colors[i], alpha=0.15, lw=0)
        ax.axhline(REACH, color="0.5", ls=":", lw=1)
        ax.set(title=f"lr {lr:g}", xlabel="hidden layers", ylabel="final test accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_loss(curves: Sequence[dict], cfg: dict, path: Path) -> Optional[Path]:
    """Running training loss of the deepest nets, per learning rate (band: min-max over seeds)."""
    if not curves:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits, lrs = cfg["inits"], cfg["lrs"]
    colors = colours(inits)
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.4 * len(lrs), 4.0), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for i in inits:
            per_step: Dict[int, List[float]] = defaultdict(list)
            for c in curves:
                if c["lr"] == lr and c["init"] == i and c.get("train_loss") is not None \
                        and math.isfinite(c["train_loss"]):
                    per_step[c["step"]].append(c["train_loss"])
            steps = sorted(per_step)
            if steps:
                ax.plot(steps, [mean(per_step[s]) for s in steps], color=colors[i], label=i, lw=1.6)
        ax.set(title=f"{max(cfg['depths'])} layers, lr {lr:g}", xlabel="step",
               ylabel="training loss (running mean)", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def describe(cfg: dict) -> str:
    """What a depth experiment trained, from its config.json."""
    layer = f"3x3 conv layers of {cfg['width']} channels" if cfg.get("conv") else \
        f"fully connected layers of {cfg['width']} units"
    first, n = cfg.get("first_seed", 0), cfg.get("seeds", 0)
    momentum = " (Nesterov momentum 0.9)" if cfg.get("optimizer") == "sgd" else ""
    return (f"plain mlp, {', '.join(map(str, sorted(cfg['depths'])))} {layer}, {cfg['activation']}, no "
            f"normalization or skip connections; {cfg['optimizer']}{momentum}, lr "
            f"{', '.join(f'{lr:g}' for lr in cfg['lrs'])}, batch {cfg['batch_size']}, {cfg['epochs']} "
            f"epoch(s) over {cfg.get('train_size') or 'all'} {cfg['dataset']} training images; "
            + (f"{n} seeds ({first}..{first + n - 1})" if n != 1 else f"1 seed ({first})"))


def observations(out: Path) -> List[str]:
    """The report's sentences, from the result folder."""
    return observations_from(files.read_table(out, "runs"), files.read_table(out, "probe"),
                             files.read_json(Path(out) / "config.json"))


def summary_table(out: Path) -> Tuple[List[str], List[List[str]]]:
    """The first learning rate's depth table (the catalog's one table per experiment)."""
    return summary_tables(out)[0]


def summary_tables(out: Path) -> List[Tuple[List[str], List[List[str]]]]:
    """The terminal's tables: one depth table per learning rate."""
    cfg = files.read_json(Path(out) / "config.json")
    runs = files.read_table(out, "runs")
    tables = []
    for lr in cfg["lrs"]:
        head, body = depth_table(runs, cfg["inits"], sorted(cfg["depths"]), lr)
        tables.append(([f"{head[0]} (lr {lr:g})"] + head[1:], body))
    return tables


def write_report(out: Path) -> Path:
    """depth.png, loss.png, signal.png, report.md and a self-contained report.html, from the files."""
    out = Path(out)
    cfg, meta = files.read_json(out / "config.json"), files.read_json(out / "meta.json")
    runs, curves, probe_rows = (files.read_table(out, n) for n in ("runs", "curves", "probe"))
    note = status_note(meta, "depth", out)
    if note is None and meta.get("interrupted"):     # a folder written before the runner
        note = "Interrupted: only the runs recorded before Ctrl-C."
    doc = Document("initlab depth: plain deep nets under each init"
                   + (" (interrupted)" if meta.get("interrupted") else " (incomplete)" if note else ""),
                   settings_line(describe(cfg), meta))
    if note:
        doc.paragraph(note)
    doc.heading("Final test accuracy (%) by depth")
    doc.paragraph(f"Cells: mean ± std over seeds; 'n/c' = mean below {100 * STALLED:.0f} % (chance is "
                  "10 %); a diverged run counts as 0; 'diverged' = every seed's loss became non-finite.")
    for lr in cfg["lrs"]:
        doc.heading(f"lr {lr:g}", level=3).table(*depth_table(runs, cfg["inits"], sorted(cfg["depths"]), lr))
    doc.heading("What depth does to each init").bullets(observations_from(runs, probe_rows, cfg))
    doc.heading("Plots")
    doc.image("Accuracy against depth", plot_depth(runs, cfg, out / "depth.png"))
    doc.image("Training loss of the deepest nets", plot_loss(curves, cfg, out / "loss.png"))
    if probe_rows:
        doc.image("Signal through the deepest net at initialization (measured, and the variance formula)",
                  probe_report.plot(probe_rows, cfg["inits"], [cfg["activation"]], out / "signal.png"))
    doc.heading("Files").paragraph("`runs.csv` (one row per depth x lr x init x seed), `curves.csv` (the "
                                   "deepest depth), `probe.csv` (signal at initialization, per layer), "
                                   "`config.json`, `meta.json`.")
    return doc.write(out)
