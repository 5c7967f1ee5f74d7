"""The lab's bonus: LeNet-5 on MNIST at >= 98.5 % test accuracy after one epoch, on *every* seed.

``RECIPE`` is the recipe found by measurement on a validation split carved from the training images
(``validation_split``); the test set is touched only by ``run_bonus`` for the final numbers. The network
stays LeNet-5 (same layers; the activation may change), one epoch over the training images.

What each ingredient buys is measured by ``initlab bonus --ablation`` (recipe minus one ingredient at a
time, over several seeds, on the validation split) and summarized in the README.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from initlab import data as data_mod
from initlab import engine, files
from initlab.document import Document, settings_line
from initlab.experiments import study

TARGET = 0.985
VALIDATION_IMAGES = 5_000     # carved from the 60,000 training images for recipe choices
VALIDATION_SEED = 1234        # which 5,000: a fixed shuffle, the same for every recipe


def recipe() -> study.StudyConfig:
    """The bonus recipe as a study configuration (one init, many seeds)."""
    return study.StudyConfig(
        inits=["kaiming"],            # He et al. 2015: unit-variance ReLU signal from the first step
        seeds=10,
        activation="relu",
        pool="avg",
        train=engine.TrainConfig(
            epochs=1,
            batch_size=32,
            optimizer="adam",
            lr=8e-3,                  # one-cycle peak; 8x the lab's constant 1e-3
            schedule="onecycle",      # warm-up over 20 % of the steps, cosine decay to ~0
            warmup=0.2,
            normalize=True,           # zero-mean, unit-std pixels (MNIST mean/std)
            label_smoothing=0.1,      # softer targets: less over-confident early steps
        ),
    )


# (name, how to remove it) for the ablation table: the recipe minus one ingredient at a time
ABLATIONS: List[Tuple[str, dict]] = [
    ("constant lr 1e-3 instead of one-cycle", {"train.schedule": "constant", "train.lr": 1e-3}),
    ("one-cycle peak 3e-3 instead of 8e-3", {"train.lr": 3e-3}),
    ("no label smoothing", {"train.label_smoothing": 0.0}),
    ("no input normalization", {"train.normalize": False}),
    ("xavier instead of kaiming", {"inits": ["xavier"]}),
    ("batch 64 instead of 32", {"train.batch_size": 64}),
    ("max pooling instead of average", {"pool": "max"}),
]


def with_changes(cfg: study.StudyConfig, changes: Dict[str, object]) -> study.StudyConfig:
    cfg = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        target = cfg
        *path, leaf = dotted.split(".")
        for part in path:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return cfg


def validation_split(ds: data_mod.Dataset) -> data_mod.Dataset:
    """55,000 training images as 'train' and 5,000 others as 'test': for choosing a recipe."""
    perm = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, train = perm[:VALIDATION_IMAGES], perm[VALIDATION_IMAGES:]
    return dataclasses.replace(ds, train_images=ds.train_images[train], train_labels=ds.train_labels[train],
                               test_images=ds.train_images[val], test_labels=ds.train_labels[val],
                               source=ds.source + f" (validation split: {VALIDATION_IMAGES} held out)")


def verdict(accs: List[float]) -> str:
    lo = min(accs)
    ok = lo >= TARGET
    if len(accs) == 1:
        return (f"{'HOLDS' if ok else 'FAILS'} on the 1 seed trained: {100 * lo:.2f} % (1 seed says nothing "
                f"about the other seeds: --seeds 10 tests 'on every seed')")
    return (f"{'HOLDS' if ok else 'FAILS'}: min {100 * lo:.2f} %, mean {100 * statistics.fmean(accs):.2f} %, "
            f"max {100 * max(accs):.2f} % over {len(accs)} seeds "
            f"({sum(a >= TARGET for a in accs)}/{len(accs)} at >= {100 * TARGET:.1f} %)")


def run_bonus(cfg: study.StudyConfig, ds: data_mod.Dataset, progress=True) -> study.StudyResult:
    return study.run_study(cfg, dataset=ds, progress=progress)


def plot_seed_curves(curves: List[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    seeds = sorted({r["seed"] for r in curves})
    cmap = matplotlib.colormaps["viridis"]
    for k, seed in enumerate(seeds):
        rows = [c for c in curves if c["seed"] == seed]
        steps = [c["step"] for c in rows]
        acc = [c["heldout_acc"] for c in rows]
        for ax in axes:
            ax.plot(steps, acc, color=cmap(k / max(1, len(seeds) - 1)), lw=1.2, label=f"seed {seed}")
    n_heldout = engine.TrainConfig().heldout_size
    axes[0].set(title=f"Held-out accuracy ({n_heldout} test images), every seed", xlabel="step",
                ylabel="accuracy", ylim=(0, 1))
    axes[1].set(title="Top end", xlabel="step", ylim=(0.95, 1.0))
    axes[1].axhline(TARGET, color="crimson", ls="--", lw=1, label="98.5 % (the verdict: whole test set)")
    axes[1].text(0.01, 0.02, f"curves: the first {n_heldout} test images; the verdict uses all of them at the "
                 "end of training", transform=axes[1].transAxes, fontsize=7, color="gray")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_bonus_report(out: Path, cfg: study.StudyConfig, result: study.StudyResult,
                       ablation: Optional[List[dict]] = None) -> Path:
    """The study's tables (meta.json names the experiment ``bonus``), ``ablation.csv`` when an
    ablation ran, then the report (:func:`write_report`)."""
    study.write_tables(out, cfg, result, experiment="bonus")
    if ablation:
        files.atomic_write_text(Path(out) / "ablation.csv", files.rows_to_csv(ablation))
    return write_report(out)


def write_report(out: Path) -> Path:
    """bonus.png, report.md and a self-contained report.html, from the folder's files alone."""
    out = Path(out)
    cfg, meta = files.read_json(out / "config.json"), files.read_json(out / "meta.json")
    runs, t = files.read_table(out, "runs"), cfg.get("train", {})
    png = plot_seed_curves(files.read_table(out, "curves"), out / "bonus.png")
    description = (f"LeNet-5 ({cfg.get('activation')}, {cfg.get('pool')} pooling), init "
                   f"{', '.join(cfg.get('inits', []))}, {t.get('optimizer')} {t.get('schedule')} peak lr "
                   f"{t.get('lr')}, batch {t.get('batch_size')}, {t.get('epochs')} epoch, normalized inputs: "
                   f"{t.get('normalize')}, label smoothing {t.get('label_smoothing')}")
    doc = Document("initlab bonus: LeNet-5, MNIST, one epoch", settings_line(description, meta))
    doc.paragraph(f"Verdict: {verdict([r['test_acc'] for r in runs])}.", bold=True)
    doc.table(["seed", "test acc", ">= 98.5 %", "steps", "s / model"],
              [[r["seed"], f"{100 * r['test_acc']:.2f} %", "yes" if r["test_acc"] >= TARGET else "NO",
                r["steps"], f"{r['train_seconds']:.1f}"] for r in runs])
    ablation = files.read_table(out, "ablation")
    if ablation:
        doc.heading("Ablation (validation split)").table(
            ["recipe", "validation acc (mean ± std)", "min", "seeds"],
            [[a["name"], f"{100 * a['mean']:.2f} ± {100 * a['std']:.2f} %" if a["n"] > 1 else
              f"{100 * a['mean']:.2f} % (1 seed)", f"{100 * a['min']:.2f} %", a["n"]] for a in ablation])
    doc.image("Accuracy of every seed", png)
    return doc.write(out)


def ablation(base: study.StudyConfig, ds: data_mod.Dataset, seeds: int, progress=True) -> List[dict]:
    """The recipe and the recipe minus each ingredient, on the validation split."""
    val = validation_split(ds)
    rows = []
    for name, changes in [("recipe", {})] + ABLATIONS:
        cfg = with_changes(base, {**changes, "seeds": seeds})
        cfg.train.record_every = 10_000       # curves are not needed here: final accuracy only
        res = study.run_study(cfg, dataset=val, progress=progress)
        accs = [r["test_acc"] for r in res.runs]
        rows.append({"name": name, "mean": statistics.fmean(accs),
                     "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "min": min(accs),
                     "n": len(accs)})
        if progress:
            print(f"{name}: {100 * rows[-1]['mean']:.2f} % (min {100 * rows[-1]['min']:.2f} %)", flush=True)
    return rows
