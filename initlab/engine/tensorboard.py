"""TensorBoard event files of a run, written from its records, so ``tensorboard --logdir DIR/tb`` can
scrub through the weight distributions of every layer during training.

Written per run into ``DIR/tb/<init>/seed<k>`` (a sweep that varies more than init and seed puts the
varied settings into the first part), with ``torch.utils.tensorboard.SummaryWriter``, which needs the
``tensorboard`` package (``pip install 'initlab[tensorboard]'``; imported only here).

- scalars: ``accuracy/heldout``, ``loss/heldout`` (the held-out curve), ``accuracy/train``,
  ``loss/train`` (running means since the previous record point), ``accuracy/test`` and ``loss/test``
  (once, at the last step), and per layer ``grad_norm/<layer>``, ``weight_std/<layer>``,
  ``act_std/<layer>``, ``dead_frac/<layer>``;
- histograms ``weights/<layer>``: the recorded histogram rows (48 fixed bins on [-r, r], values
  outside clamped into the edge bins), with min / max / sum / sum of squares taken from the layer row
  of the same step (sum = n * mean, sum of squares = n * (std^2 + mean^2)), so TensorBoard's summary
  statistics are exact even though the bins are coarse;
- histograms ``gradients/<layer>``: the gradient of each layer's weight at initialization, on the run's
  first training batch -- exactly the gradient the engine's first step used (computed by
  ``initlab.sweep``, only when TensorBoard output is asked for). The engine keeps no gradient tensors
  during training, so later steps have the gradient *norm* scalar only.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from initlab.models import weight_layers

TB_DIR = "tb"
CURVE_TAGS = {"heldout_acc": "accuracy/heldout", "heldout_loss": "loss/heldout",
              "train_acc": "accuracy/train", "train_loss": "loss/train"}
LAYER_TAGS = {"grad_norm": "grad_norm", "w_std": "weight_std", "act_std": "act_std",
              "dead_frac": "dead_frac"}


class TensorBoardMissing(RuntimeError):
    """The tensorboard package is not installed."""

def require() -> None:
    """Raise TensorBoardMissing (one line, with the fix) unless SummaryWriter can be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise TensorBoardMissing("--tensorboard needs the tensorboard package: "
                                 "pip install 'initlab[tensorboard]'") from None


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def histogram_from_bins(bins: List[dict], layer_row: Optional[dict]) -> dict:
    """add_histogram_raw's arguments from one (step, layer)'s recorded bins and its layer row."""
    bins = sorted(bins, key=lambda b: b["bin_left"])
    counts = [float(b["count"]) for b in bins]
    n = sum(counts)
    centers = [(b["bin_left"] + b["bin_right"]) / 2 for b in bins]
    if layer_row and all(_finite(layer_row.get(k)) for k in ("w_mean", "w_std", "w_min", "w_max")):
        mean, std = layer_row["w_mean"], layer_row["w_std"]
        lo, hi = layer_row["w_min"], layer_row["w_max"]
        total, squares = n * mean, n * (std ** 2 + mean ** 2)
    else:      # no layer row: estimate from the bin centres
        lo, hi = bins[0]["bin_left"], bins[-1]["bin_right"]
        total = sum(c * x for c, x in zip(counts, centers))
        squares = sum(c * x * x for c, x in zip(counts, centers))
    return {"min": lo, "max": hi, "num": n, "sum": total, "sum_squares": squares,
            "bucket_limits": [b["bin_right"] for b in bins], "bucket_counts": counts}


def write_run(log_dir: Path, curves: List[dict], layers: List[dict], hists: List[dict],
              run_row: Optional[dict] = None, grad_hists: Optional[Dict[str, dict]] = None) -> Path:
    """Write one run's event file into ``log_dir``, replacing what was there (a rerun after a resume
    must not add a second copy of every point). Written in a temp folder and renamed into place."""
    require()
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    log_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=log_dir.parent, prefix=f".{log_dir.name}.", suffix=".tmp"))
    try:
        w = SummaryWriter(log_dir=str(tmp))
        for row in curves:
            for key, tag in CURVE_TAGS.items():
                if _finite(row.get(key)):
                    w.add_scalar(tag, row[key], row["step"])
        layer_at = {}
        for row in layers:
            layer_at[(row["step"], row["layer"])] = row
            for key, tag in LAYER_TAGS.items():
                if _finite(row.get(key)):
                    w.add_scalar(f"{tag}/{row['layer']}", row[key], row["step"])
        groups: Dict[tuple, List[dict]] = {}
        for b in hists:
            groups.setdefault((b["step"], b["layer"]), []).append(b)
        for (step, layer), bins in sorted(groups.items(), key=lambda kv: kv[0][0]):
            w.add_histogram_raw(f"weights/{layer}", global_step=step,
                                **histogram_from_bins(bins, layer_at.get((step, layer))))
        for layer, h in (grad_hists or {}).items():
            w.add_histogram_raw(f"gradients/{layer}", global_step=0, **h)
        if run_row:
            last = max([r["step"] for r in curves], default=run_row.get("steps") or 0)
            for key, tag in (("test_acc", "accuracy/test"), ("test_loss", "loss/test")):
                if _finite(run_row.get(key)):
                    w.add_scalar(tag, run_row[key], last)
        w.close()
        if log_dir.exists():
            shutil.rmtree(log_dir)
        os.replace(tmp, log_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return log_dir


def gradient_histograms(model, x, y, label_smoothing: float = 0.0, bins: int = 48) -> Dict[str, dict]:
    """{layer: add_histogram_raw arguments} of each Conv/Linear weight's gradient of the mean
    cross-entropy on the batch (x, y), ``bins`` equal bins spanning the gradient's [min, max]."""
    import torch
    import torch.nn.functional as F


    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y, label_smoothing=label_smoothing).backward()
    out = {}
    for name, module in weight_layers(model):
        g = module.weight.grad
        if g is None:
            continue
        g = g.detach().double().flatten()
        lo, hi = float(g.min()), float(g.max())
        if hi <= lo:                       # constant gradient (all-zero init): one narrow bin
            hi = lo + max(abs(lo), 1e-12) * 1e-6
        counts = torch.histc(g, bins=bins, min=lo, max=hi)
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)[1:]
        out[name] = {"min": lo, "max": float(g.max()), "num": g.numel(), "sum": float(g.sum()),
                     "sum_squares": float((g * g).sum()), "bucket_limits": edges.tolist(),
                     "bucket_counts": counts.tolist()}
    model.zero_grad(set_to_none=True)
    return out
