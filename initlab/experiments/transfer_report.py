"""The transfer report, from its result folder alone: accuracy by target size and init, where
pretraining helps and where it stops mattering, curves and the size plot."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from initlab import files
from initlab.document import PAGE_STYLE, Document, colours, figure, grids, mean, pct, save, settings_line, status_note
from initlab.experiments.transfer import EARLY_STEPS, MODES
from initlab.seeds import bands, count, mean_std, over_seeds


def load_tables(out: Path) -> Dict:
    out = Path(out)
    return {"out": out, "config": files.read_json(out / "config.json"),
            "meta": files.read_json(out / "meta.json"), "runs": files.read_table(out, "runs"),
            "curves": files.read_table(out, "curves"), "pretrain": files.read_table(out, "pretrain")}


def _inits(f: Dict) -> List[str]:
    """Transfer modes first, then scratch inits, in the order of the config."""
    order = list(f["config"].get("modes") or []) + list(f["config"].get("inits") or [])
    seen = {r["init"] for r in f["runs"]}
    return [i for i in order if i in seen] + sorted(seen - set(order))


def summary_rows(f: Dict) -> List[dict]:
    """One row per (target size, init): test accuracy over seeds (``acc``, a diverged run counted, not
    averaged; ``acc_mean``, ``acc_std``, ``acc_min`` from it), early held-out
    accuracy, steps to 90/97 % (mean; None unless every seed got there)."""

    groups: Dict[Tuple[int, str], List[dict]] = defaultdict(list)
    for r in f["runs"]:
        groups[(r["target_images"], r["init"])].append(r)
    rows = []
    order = {name: k for k, name in enumerate(_inits(f))}
    for (n, name), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
        acc = over_seeds([r["test_acc"] for r in runs], [r.get("diverged") for r in runs])
        row = {"target_images": n, "init": name, "kind": runs[0]["kind"], "n": len(runs), "acc": acc,
               "acc_mean": acc.mean, "acc_std": acc.std, "acc_min": acc.lo}
        for s in [0, *EARLY_STEPS]:
            vals = [r.get(f"acc_at_{s}") for r in runs]
            row[f"acc_at_{s}"] = None if any(v is None for v in vals) else mean(vals)
        for key in ("steps_to_90", "steps_to_97"):
            vals = [r[key] for r in runs]
            row[key] = None if any(v is None for v in vals) else mean(vals)
            row["reached_" + key[-2:]] = sum(v is not None for v in vals)
        rows.append(row)
    return rows


def summary_table(f: Dict) -> Tuple[List[str], List[List[str]]]:
    head = ["target images", "init", "test acc (mean ± std)", "min"] + \
        [f"acc @ step {s}" for s in EARLY_STEPS] + ["steps to 90 %", "steps to 97 %"]

    def steps(row, key):
        v, reached = row[key], row["reached_" + key[-2:]]
        if v is None:
            return f"never ({reached}/{row['n']})" if reached else "never"
        return f"{v:,.0f}"

    body = [[f"{r['target_images']:,}", r["init"], mean_std(r["acc"], unit=" %"),
             pct(r["acc_min"])] + [pct(r[f"acc_at_{s}"], 1) if r[f"acc_at_{s}"] is not None else "n/a"
                                    for s in EARLY_STEPS]
            + [steps(r, "steps_to_90"), steps(r, "steps_to_97")] for r in summary_rows(f)]
    return head, body


def observations(f: Dict) -> List[str]:
    """Sentences computed from the summary: where pretraining helps and where it stops mattering."""
    rows = summary_rows(f)
    sizes = sorted({r["target_images"] for r in rows})
    out: List[str] = []
    gaps = []
    pts = lambda x: f"{100 * x:+.2f} pts"
    for n in sizes:
        here = [r for r in rows if r["target_images"] == n]
        tr = [r for r in here if r["kind"] == "transfer" and r["acc"].n]   # (every seed diverged: no
        sc = [r for r in here if r["kind"] == "scratch" and r["acc"].n]    # accuracy to compare)
        if not tr or not sc:
            continue
        bt, bs = max(tr, key=lambda r: r["acc_mean"]), max(sc, key=lambda r: r["acc_mean"])
        gap = bt["acc_mean"] - bs["acc_mean"]
        noise = max(bt["acc_std"], bs["acc_std"])
        gaps.append((n, gap, noise, bt, bs))
        n_seeds = min(bt["acc"].n, bs["acc"].n)
        s = (f"{n:,} target images: best pretrained init {bt['init']} ends at {100 * bt['acc_mean']:.2f} % "
             f"test accuracy, best scratch init {bs['init']} at {100 * bs['acc_mean']:.2f} % "
             f"({pts(gap)}; " + (f"seed std up to {100 * noise:.2f} pts)" if n_seeds > 1 else
                                 "1 seed: no spread)"))
        early = [(st, max((r[f"acc_at_{st}"] for r in tr if r[f"acc_at_{st}"] is not None), default=None),
                  max((r[f"acc_at_{st}"] for r in sc if r[f"acc_at_{st}"] is not None), default=None))
                 for st in EARLY_STEPS]
        early = [(st, a, b) for st, a, b in early if a is not None and b is not None]
        if early:
            s += "; held-out accuracy after " + ", ".join(
                f"{st} steps {100 * a:.1f} % vs {100 * b:.1f} % ({pts(a - b)})" for st, a, b in early)
        for key in ("steps_to_90", "steps_to_97"):
            a, b = bt[key], bs[key]
            if a is not None or b is not None:
                fa = "never" if a is None else f"{a:,.0f}"
                fb = "never" if b is None else f"{b:,.0f}"
                s += f"; steps to {key[-2:]} %: {fa} vs {fb}"
        out.append(s + ".")
    one_seed = any(min(bt["acc"].n, bs["acc"].n) < 2 for _, _, _, bt, bs in gaps)
    if gaps and one_seed:
        parts = ", ".join(f"{pts(g)} at {n:,}" for n, g, _, _, _ in gaps)
        out.append(f"The final-accuracy difference, best pretrained minus best scratch, is {parts} images "
                   "(1 seed: no spread to judge it against; --seeds 3 or more says whether it is real).")
    elif gaps:
        parts = ", ".join(f"{pts(g)} at {n:,}" for n, g, _, _, _ in gaps)
        s = f"The final-accuracy difference, best pretrained minus best scratch, is {parts} images"
        margin = lambda noise: max(2 * noise, 0.005)
        helped = [n for n, g, noise, _, _ in gaps if g > margin(noise)]
        hurt = [n for n, g, noise, _, _ in gaps if g < -margin(noise)]
        settled = [n for n, g, noise, _, _ in gaps if abs(g) <= margin(noise)]
        sizes_ = lambda ns: ", ".join(f"{n:,}" for n in ns)
        if helped:
            s += (f". Pretraining ends higher beyond the seed spread (by more than 2 std and 0.5 pts) "
                  f"at {sizes_(helped)} images")
        else:
            s += (". At no size does pretraining end higher beyond the seed spread (by more than 2 std "
                  "and 0.5 pts)")
        if hurt:
            s += f"; it ends lower beyond the spread at {sizes_(hurt)} images"
        if settled:
            s += (f"; at {sizes_(settled)} images the difference is within 2 std of the seeds or 0.5 "
                  f"pts: there pretraining does not change where training ends")
        out.append(s + ".")
    # freezing: the pretrained features with only f6 and the output relearned, versus fine-tuning all
    fz = {r["target_images"]: r["acc_mean"] for r in rows if r["init"] == "freeze"}
    ft = {r["target_images"]: r["acc_mean"] for r in rows if r["init"] == "finetune"}
    both = [n for n in sizes if n in fz and n in ft]
    if both:
        out.append("Frozen convolutions minus fine-tuned ones, final accuracy: " + ", ".join(
            f"{pts(fz[n] - ft[n])} at {n:,} images" for n in both) + ".")
    zero = [r for r in rows if r["kind"] == "transfer" and r["acc_at_0"] is not None
            and r["target_images"] == sizes[0]] if sizes else []
    if zero:
        out.append("Held-out accuracy before any target step: " + ", ".join(
            f"{r['init']} {100 * r['acc_at_0']:.1f} %" for r in zero)
            + f" -- the pretrained head answers with {f['config'].get('source')} classes, so the "
            f"transfer is in the features, not the labels.")
    pre = [r["test_acc"] for r in f["pretrain"] if r.get("test_acc") is not None]
    if pre:
        out.append(f"The pretrained models reached {100 * min(pre):.2f}–{100 * max(pre):.2f} % on the "
                   f"{f['pretrain'][0]['source']} test set ({count(len(pre), 'seed')}).")
    return out


def figure_curves(f: Dict):
    """One panel per target size: held-out accuracy against step (mean, min–max band over seeds).
    A matplotlib Figure (not attached to pyplot)."""
    sizes = sorted({r["target_images"] for r in f["runs"]})
    colors = colours(_inits(f))
    fig, axes = figure(1, len(sizes), 5.2 * len(sizes), 4.2)
    n_seeds = len({r["seed"] for r in f["runs"]})
    for ax, n in zip(axes[0], sizes):
        acc = bands((r for r in f["curves"] if r["target_images"] == n), "init", "step", "heldout_acc")
        for name in (i for i in _inits(f) if i in acc):
            b, style = acc[name], "-" if name in MODES else "--"
            ax.plot(b.x, b.mean, style, color=colors[name], label=name, lw=1.8)
            ax.fill_between(b.x, b.lo, b.hi, color=colors[name], alpha=0.15, lw=0)
        ax.set(title=f"{n:,} target images", xlabel="step", ylabel="held-out accuracy", ylim=(0, 1))
    grids(axes)
    axes[0][0].legend(title=f"solid: pretrained, dashed: scratch\n(mean, band min–max of {n_seeds} seeds)",
                      fontsize=8, title_fontsize=8, loc="lower right")
    return fig


def plot_curves(f: Dict, path: Path) -> Path:
    return save(figure_curves(f), path)


def figure_sizes(f: Dict):
    """Accuracy against target-set size: early (after the last early step) and final. A matplotlib
    Figure (not attached to pyplot)."""
    rows = summary_rows(f)
    colors = colours(_inits(f))
    early = EARLY_STEPS[-1]
    fig, grid = figure(1, 2, 11, 4.2)
    axes = grid[0]
    for name in _inits(f):
        mine = [r for r in rows if r["init"] == name]
        xs = [r["target_images"] for r in mine]
        style = "o-" if name in MODES else "s--"
        e = [(x, r[f"acc_at_{early}"]) for x, r in zip(xs, mine) if r[f"acc_at_{early}"] is not None]
        if e:
            axes[0].plot([x for x, _ in e], [y for _, y in e], style, color=colors[name], label=name)
        axes[1].errorbar(xs, [r["acc_mean"] for r in mine], yerr=[r["acc_std"] for r in mine],
                         fmt=style, color=colors[name], label=name, capsize=3)
    axes[0].set(title=f"Held-out accuracy after {early} steps", xscale="log", xlabel="target images",
                ylabel="accuracy")
    axes[1].set(title="Final test accuracy (mean ± std over seeds)", xscale="log",
                xlabel="target images", ylabel="accuracy")
    grids(axes, which="both")
    axes[1].legend(fontsize=8, loc="lower right")
    return fig


def plot_sizes(f: Dict, path: Path) -> Path:
    return save(figure_sizes(f), path)


def describe(f: Dict) -> str:
    c, t = f["config"], f["config"].get("train", {})
    plan = ", ".join(f"{p['target_images']:,} images: {p['epochs']} epoch(s) = {p['steps']} steps"
                     for p in c.get("plan", []))
    pre = (f"from checkpoint {c['from_checkpoint']}" if c.get("from_checkpoint") else
           f"pretrained {c.get('pretrain_epochs')} epoch(s) on "
           + (f"{c['pretrain_size']:,} images of " if c.get("pretrain_size") else "")
           + f"{c.get('source')} with {c.get('pretrain_init')} init")
    return (f"{c.get('model')} ({c.get('activation')}), {pre}; target {c.get('target')}: {plan}; "
            f"{t.get('optimizer')} lr {t.get('lr')}, batch {t.get('batch_size')}; seeds "
            f"{', '.join(map(str, c.get('seed_list', [])))}; reinit_head redraws the head with "
            f"{c.get('head_init')}; {training_seconds(f):.0f} s of training")


def training_seconds(f: Dict) -> float:
    """Seconds of training behind the tables: a folder's stated wall time, or the target runs' shares
    of their stacks plus the longest pretraining stack (the runner's folders)."""
    if "wall_seconds" in f["meta"]:
        return f["meta"]["wall_seconds"]
    pre = [r["seconds"] for r in f["pretrain"] if isinstance(r.get("seconds"), (int, float))]
    return sum(r.get("train_seconds") or 0.0 for r in f["runs"]) + (max(pre) if pre else 0.0)


def write_report(out: Path, title: Optional[str] = None) -> Path:
    """report.md and a self-contained report.html in ``out``, from its files; returns the HTML path."""
    f = load_tables(out)
    c = f["config"]
    title = title or f"initlab transfer: {c.get('source')} -> {c.get('target')} as an initialization"
    doc = Document.report(title, settings_line(describe(f), f["meta"]), f["meta"],
                          status_note(f["meta"], "transfer", f["out"]))
    doc.heading("Results").table(*summary_table(f))
    doc.paragraph("Inits: finetune = pretrained weights, all layers trained; freeze = pretrained weights, "
                  "convolutions frozen; reinit_head = pretrained weights with the output layer redrawn; "
                  "the others are scratch inits. Every init of a seed sees the same target images in the "
                  "same order. Test accuracy on the full test split; curves and steps to 90/97 % on its "
                  "first held-out images (first record point at or above; 'never (k/n)' when only k of n "
                  "seeds got there).")
    if f["runs"]:       # (a run stopped after its pretraining has no target run to compare yet)
        doc.heading("Where pretraining helps, and where it stops mattering").bullets(observations(f))
        doc.heading("Plots")
        doc.image("Held-out accuracy during target training", plot_curves(f, f["out"] / "curves.png"))
        doc.image("Accuracy against the amount of target data", plot_sizes(f, f["out"] / "sizes.png"))
    else:
        doc.paragraph("No target run finished yet: only the pretraining (pretrain.csv); `--resume` trains "
                      "the rest.")
    doc.files(
        "`runs.csv` (one row per run), `curves.csv`, `pretrain.csv`, `config.json` (the resolved "
        "configuration, with the steps per target size), `meta.json` (environment), "
        "`store.sqlite` and `records/` (the run store: `initlab runs`, `--resume`); each pretrained "
        "checkpoint is `records/<run>/weights.pt`, named in `pretrain.csv` and reusable with "
        "`--from-checkpoint`.")
    style = PAGE_STYLE.replace("td:first-child,th:first-child", "td:nth-child(2),th:nth-child(2)")
    return doc.write(f["out"], style)
