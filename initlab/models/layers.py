"""A model's weight layers: the walk an initializer follows, parameter counts and the ``summary`` table."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn


def weight_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The (name, module) pairs an initializer fills: every Conv2d / Linear, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters; with LeNet-5's C3 table only the 60 connected 5x5 kernels count."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if getattr(model, "c3_table", False):
        total -= int((1 - model.c3_mask).sum().item()) * 25
    return total


def summary(model: nn.Module, input_shape=(1, 1, 28, 28)) -> str:
    """A table of each layer's output shape and parameter count, from a real forward pass."""
    with torch.no_grad():
        _, acts = model(torch.zeros(input_shape), return_activations=True)
    rows = [("layer", "output shape", "params")]
    for name, module in weight_layers(model):
        n = sum(p.numel() for p in module.parameters())
        if name == "c3" and getattr(model, "c3_table", False):
            n -= int((1 - model.c3_mask).sum().item()) * 25
        shape = tuple(acts[name].shape[1:]) if name in acts else "?"
        rows.append((name, "x".join(map(str, shape)), f"{n:,}"))
    rows.append(("total", "", f"{count_parameters(model):,}"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows
    )
