"""The depth report, from its result folder alone: accuracy against depth per init and learning rate,
the training loss of the deepest nets, their signal at initialization next to the variance formula,
and sentences computed from those numbers (the deepest depth each init still trains at)."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from initlab import files
from initlab.document import Document, colours, figure, grids, pct, save, settings_line, status_note
from initlab.experiments import grid, probe_report
from initlab.seeds import Seeds, bands, count, mean_std, over_seeds

REACH = 0.90        # "trains": mean final test accuracy at or above this
STALLED = grid.NC_ACCURACY   # "stalled": mean final test accuracy below this (chance is 10 %)


def accuracy(runs: Sequence[dict]) -> Dict[Tuple[float, str, int], Seeds]:
    """{(lr, init, depth): final test accuracy over seeds}; a diverged run is counted, not averaged."""
    groups: Dict[Tuple[float, str, int], List[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["lr"], r["init"], r["depth"])].append(r)
    return {k: over_seeds([r["test_acc"] for r in rs], [r.get("diverged") for r in rs])
            for k, rs in groups.items()}


def trains(s: Optional[Seeds], threshold: float = REACH) -> bool:
    """Every seed finite and their mean at or above ``threshold``."""
    return s is not None and not s.diverged and s.mean >= threshold


def _mean(s: Optional[Seeds]) -> float:
    """The mean for ranking: -1 where no seed has a value."""
    return s.mean if s is not None and s.n else -1.0


def depth_table(runs: Sequence[dict], inits: Sequence[str], depths: Sequence[int],
                lr: float) -> Tuple[List[str], List[List[str]]]:
    """Rows: inits; columns: depths; cells: mean ± std of the final test accuracy (%), n/c below 20 %
    (:func:`initlab.document.mean_std`)."""
    acc = accuracy(runs)
    body = [[i] + [mean_std(acc[(lr, i, d)], nc_below=STALLED) if (lr, i, d) in acc else "" for d in depths]
            for i in inits]
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
    """The deepest depth at which ``init``'s mean test accuracy reached ``threshold`` with no seed
    diverged, provided every shallower depth trained did too (None: not even the shallowest)."""
    acc = accuracy(runs)
    depths = sorted(d for (l, i, d) in acc if l == lr and i == init)
    best = None
    for d in depths:
        if not trains(acc[(lr, init, d)], threshold):
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
    seeds = count(len({r["seed"] for r in runs}), "seed")
    out = []
    reach = {lr: {i: deepest_reaching(runs, i, lr) for i in inits} for lr in lrs}
    for lr in lrs:
        parts = [f"{i}: {('depth ' + str(d)) if d else 'not even depth ' + str(depths[0])}"
                 for i, d in reach[lr].items()]
        out.append(f"lr {lr:g}: deepest depth at which each init still reaches {100 * REACH:.0f} % "
                   f"(mean over {seeds}, no seed diverged) -- " + "; ".join(parts) + ".")
        at_deep = {i: acc[(lr, i, deepest)] for i in inits if (lr, i, deepest) in acc}
        blew_up = {i: d for i, d in diverged(runs, lr, deepest).items() if i in at_deep}
        stalled = [f"{i} ({pct(s.mean)})" for i, s in at_deep.items() if i not in blew_up and s.mean < STALLED]
        trained = [f"{i} ({pct(s.mean)})" for i, s in at_deep.items() if trains(s)]
        gone = [f"{i} ({n} of {total} seeds, first at step {step})" for i, (n, total, step) in blew_up.items()]
        if stalled or trained or gone:
            out.append(f"lr {lr:g}, {deepest} layers: " + "; ".join(
                part for part in (f"trains: {', '.join(trained)}" if trained else "",
                                  f"stalls near chance: {', '.join(stalled)}" if stalled else "",
                                  f"diverges (loss not finite): {', '.join(gone)}" if gone else "") if part)
                + ".")
    if len(lrs) > 1:
        # deepest depth reaching 90 % first, then the accuracy at the deepest depth
        best = {lr: max(inits, key=lambda i: (reach[lr][i] or 0, _mean(acc.get((lr, i, deepest)))))
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
        at_deep = {i: trains(acc[(lr, i, deepest)]) for lr in lrs[:1] for i in inits if (lr, i, deepest) in acc}
        contrast = any(at_deep.get(i, False) for i in kept)
        shrinks = [i for i in shrinks if not at_deep.get(i, True)] if contrast else []
        grows = [i for i in grows if not at_deep.get(i, True)] if contrast else []
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
    others = [i for i in inits if i != best and (lr, i, depth) in acc and acc[(lr, i, depth)].n]
    if not others or (lr, best, depth) not in acc or not acc[(lr, best, depth)].n:
        return ""
    second = max(others, key=lambda i: acc[(lr, i, depth)].mean)
    a, b = acc[(lr, best, depth)], acc[(lr, second, depth)]
    gap = 100 * (a.mean - b.mean)
    if min(a.n, b.n) < 2:
        return f"{gap:.2f} points ahead of {second} at {depth} layers (1 seed: no spread)"
    beyond = gap > 100 * max(a.std, b.std)
    return (f"{gap:.2f} points ahead of {second} at {depth} layers, "
            f"{'beyond' if beyond else 'within'} the seed spread")


def plot_depth(runs: Sequence[dict], cfg: dict, path: Path) -> Path:
    """Per learning rate: final test accuracy against depth, one line per init (band: min-max over
    seeds; a diverged seed is left out, a depth where every seed diverged is an x at 0)."""
    inits, lrs = cfg["inits"], cfg["lrs"]
    colors = colours(inits)
    fig, axes = figure(1, len(lrs), 5.4 * len(lrs), 4.2)
    for ax, lr in zip(axes[0], lrs):
        here = [r for r in runs if r["lr"] == lr]
        acc = bands(here, "init", "depth", "test_acc")
        marked = False
        for i in inits:
            if i in acc:
                ax.plot(acc[i].x, acc[i].mean, "o-", color=colors[i], label=i, lw=1.6)
                ax.fill_between(acc[i].x, acc[i].lo, acc[i].hi, color=colors[i], alpha=0.15, lw=0)
            gone = sorted({r["depth"] for r in here if r["init"] == i} - set(acc[i].x if i in acc else []))
            if gone:
                ax.plot(gone, [0.0] * len(gone), "x", color=colors[i], ms=8, mew=2, clip_on=False,
                        label=None if marked else "x: every seed diverged")
                marked = True
        ax.axhline(REACH, color="0.5", ls=":", lw=1)
        ax.set(title=f"lr {lr:g}", xlabel="hidden layers", ylabel="final test accuracy", ylim=(0, 1))
    grids(axes)
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def plot_loss(curves: Sequence[dict], cfg: dict, path: Path) -> Optional[Path]:
    """Running training loss of the deepest nets, per learning rate (mean, band: min-max over seeds)."""
    if not curves:
        return None
    inits, lrs = cfg["inits"], cfg["lrs"]
    colors = colours(inits)
    fig, axes = figure(1, len(lrs), 5.4 * len(lrs), 4.0)
    for ax, lr in zip(axes[0], lrs):
        loss = bands([c for c in curves if c["lr"] == lr], "init", "step", "train_loss")
        for i in inits:
            if i in loss:
                ax.plot(loss[i].x, loss[i].mean, color=colors[i], label=i, lw=1.6)
                ax.fill_between(loss[i].x, loss[i].lo, loss[i].hi, color=colors[i], alpha=0.15, lw=0)
        ax.set(title=f"{max(cfg['depths'])} layers, lr {lr:g}", xlabel="step",
               ylabel="training loss (running mean)", yscale="log")
    grids(axes)
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


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
    doc = Document.report("initlab depth: plain deep nets under each init", settings_line(describe(cfg), meta),
                          meta, status_note(meta, "depth", out))
    doc.heading("Final test accuracy (%) by depth")
    doc.paragraph(f"Cells: mean ± std over seeds; 'n/c' = mean below {100 * STALLED:.0f} % (chance is "
                  "10 %); '(k/n diverged)' = k of n seeds' loss became non-finite, left out of the mean (not "
                  "counted as 0); 'diverged' = every seed's did.")
    for lr in cfg["lrs"]:
        doc.heading(f"lr {lr:g}", level=3).table(*depth_table(runs, cfg["inits"], sorted(cfg["depths"]), lr))
    doc.heading("What depth does to each init").bullets(observations_from(runs, probe_rows, cfg))
    doc.heading("Plots")
    doc.image("Accuracy against depth", plot_depth(runs, cfg, out / "depth.png"))
    doc.image("Training loss of the deepest nets", plot_loss(curves, cfg, out / "loss.png"))
    if probe_rows:
        doc.image("Signal through the deepest net at initialization (measured, and the variance formula)",
                  probe_report.plot(probe_rows, cfg["inits"], [cfg["activation"]], out / "signal.png"))
    doc.files("`runs.csv` (one row per depth x lr x init x seed), `curves.csv` (the "
                                   "deepest depth), `probe.csv` (signal at initialization, per layer), "
                                   "`config.json`, `meta.json`.")
    return doc.write(out)
