"""What a training run leaves behind: tidy rows of curves, per-layer statistics and weight histograms.

All functions take *stacked* tensors whose first two dims are (S seeds, I members) — the layout the
engine trains in — and reduce everything else, so one call measures every model of a stack at once.
Rows are plain dicts keyed by ``run`` (the flat index ``s * I + i``); ``initlab.study`` joins them with
the run table and writes CSV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch

HIST_BINS = 48


def layer_weight_stats(w: torch.Tensor) -> Dict[str, torch.Tensor]:
    """mean / std / min / max of each model's weight, w: (S, I, *shape) -> each (S, I)."""
    flat = w.detach().flatten(2).float()
    return {
        "w_mean": flat.mean(-1),
        "w_std": flat.std(-1, correction=0),
        "w_min": flat.amin(-1),
        "w_max": flat.amax(-1),
    }


def grad_norm(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """L2 norm of each model's gradient (S, I); NaN where no gradient exists."""
    if g is None:
        return torch.full(like.shape[:2], math.nan, device=like.device)
    return g.detach().flatten(2).float().norm(dim=-1)


def distinct_units(w: torch.Tensor, b: torch.Tensor | None, decimals: int = 6) -> torch.Tensor:
    """How many different units (rows of a Linear weight, filters of a Conv) each model has, counting
    the bias. All-zero (or any constant) initialization makes every unit of a layer identical, and since
    identical units get identical gradients they stay identical: this count then stays at 1."""
    S, I, out = w.shape[:3]
    rows = w.detach().reshape(S, I, out, -1)
    if b is not None:
        rows = torch.cat([rows, b.detach().reshape(S, I, out, 1)], dim=-1)
    rows = torch.round(rows.float().cpu(), decimals=decimals)
    counts = torch.empty(S, I)
    for s in range(S):
        for i in range(I):
            counts[s, i] = torch.unique(rows[s, i], dim=0).shape[0]
    return counts


def activation_stats(a: torch.Tensor, rectifier: bool, chunk: int = 8) -> Dict[str, torch.Tensor]:
    """a: (S, I, P probe images, *features). Mean / std of the outputs and, for rectifiers, the fraction
    of units (every output feature: channel x position for a conv) that are <= 0 on *every* probe
    image — a dead ReLU gets no gradient from any of them.

    The tensor is read in place as rows x columns, each column one model's (or, for a channels_last
    view (S, I, P, C, H, W) laid out (P, H, W, S, I, C) -- the LeNet kernel's -- one model-channel's)
    values, ``chunk`` images' worth of rows at a time so each pass stays in cache."""
    a = a.detach().float()
    S, I, P = a.shape[:3]
    if a.dim() == 6 and a.permute(2, 4, 5, 0, 1, 3).is_contiguous():
        _, _, _, C, H, W = a.shape
        rows = a.permute(2, 4, 5, 0, 1, 3).reshape(P * H * W, S * I * C)
        by_image = rows.view(P, H * W * S * I * C)
        mean, var = _column_moments(rows, chunk * H * W, C)
        feature_layout = (H * W, S, I, C)
    else:
        a = a.contiguous()
        rows = a.view(S * I, -1).t()                   # (P * F, S * I): each column contiguous
        by_image = a.view(S, I, P, -1).permute(2, 0, 1, 3)
        mean, var = _column_moments(rows, chunk * (rows.shape[0] // P), 1)
        feature_layout = None
    out = {"act_mean": mean.view(S, I).float(), "act_std": var.sqrt().view(S, I).float()}
    if rectifier:
        most = None                                    # per-feature max over the probe images
        for part in by_image.split(chunk):
            m = part.amax(0)
            most = m if most is None else torch.maximum(most, m)
        dead = (most <= 0).float()
        out["dead_frac"] = (dead.view(feature_layout).mean((0, 3)) if feature_layout
                            else dead.mean(-1))
    else:
        out["dead_frac"] = torch.full((S, I), math.nan, device=a.device)
    return out


def _column_moments(rows: torch.Tensor, step: int, group: int):
    """Mean and population variance per group of ``group`` adjacent columns of ``rows`` (N, K):
    per-column sums of (x - shift) and its square in float64, ``step`` rows at a time, then the
    columns of a group combined (Chan et al.: M2 = sum M2_c + N * sum (mean_c - mean)^2)."""
    N = rows.shape[0]
    shift = rows[:step].mean(0)
    s1 = torch.zeros(rows.shape[1], dtype=torch.float64, device=rows.device)
    s2 = torch.zeros_like(s1)
    for part in rows.split(step):
        d = part - shift
        s1 += d.sum(0, dtype=torch.float64)
        s2 += d.square_().sum(0, dtype=torch.float64)
    col_mean = (shift.double() + s1 / N).view(-1, group)
    col_m2 = (s2 - s1 * s1 / N).clamp_min(0).view(-1, group)
    mean = col_mean.mean(-1)
    m2 = col_m2.sum(-1) + N * (col_mean - mean[:, None]).square().sum(-1)
    return mean, m2 / (N * group)


def histogram_range(w0: torch.Tensor) -> float:
    """The half-width r of the fixed [-r, r] histogram of one model's layer, from its initial weight:
    1.5x the initial largest finite magnitude (at least 0.2) (so an all-zero layer still gets bins wide enough
    to show where training takes it). Weights outside fall into the edge bins; min/max are kept apart."""
    finite = w0.detach()[torch.isfinite(w0.detach())]
    biggest = float(finite.abs().max()) if finite.numel() else 0.0
    return max(biggest, 0.2) * 1.5


def histograms(w: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
    """(S, I, HIST_BINS) counts of each model's weights on its own fixed range [-r, r], with values
    outside clamped into the edge bins."""
    S, I = w.shape[:2]
    flat = w.detach().flatten(2).float().cpu()
    r = ranges.cpu()
    counts = torch.empty(S, I, HIST_BINS)
    for s in range(S):
        for i in range(I):
            lim = float(r[s, i])
            values = flat[s, i][torch.isfinite(flat[s, i])]     # a diverged model's NaNs are not counted
            counts[s, i] = torch.histc(values.clamp(-lim, lim), HIST_BINS, -lim, lim)
    return counts


@dataclass
class Records:
    """The rows a stack of runs produces; ``run`` is the flat index s * I + i of the stack."""
    curves: List[dict] = field(default_factory=list)
    layers: List[dict] = field(default_factory=list)
    hists: List[dict] = field(default_factory=list)


def per_run_rows(step: int, values: Dict[str, torch.Tensor], **extra) -> List[dict]:
    """Turn {metric: (S, I) tensor} into one row per run: {"run", "step", metric..., extra...}."""
    first = next(iter(values.values()))
    S, I = first.shape[:2]
    cpu = {k: v.detach().float().cpu().reshape(S * I).tolist() for k, v in values.items()}
    return [{"run": r, "step": step, **extra, **{k: cpu[k][r] for k in cpu}} for r in range(S * I)]
