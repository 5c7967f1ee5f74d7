"""LeNet-5 (LeCun et al. 1998) and the C3 connection table of its Table I."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from initlab import activations

# LeCun et al. 1998, Table I: which S2 feature maps (rows 0-5) each C3 map (columns 0-15) sees.
# Columns 0-5 see 3 contiguous maps, 6-11 four contiguous, 12-14 four non-contiguous, 15 all six:
# 60 of the 96 possible connections, to "break the symmetry" and keep the parameter count down.
C3_TABLE: Tuple[Tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def c3_connection_mask() -> torch.Tensor:
    """(16, 6, 1, 1) float mask: 1 where C3 map ``o`` is connected to S2 map ``i`` (Table I)."""
    mask = torch.zeros(16, 6, 1, 1)
    for out_map, in_maps in enumerate(C3_TABLE):
        mask[out_map, list(in_maps)] = 1.0
    return mask


class LeNet5(nn.Module):
    """LeNet-5 after LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
    document recognition", Fig. 2:

        input 1@28x28, zero-padded to 32x32
        C1 conv 6@5x5   -> 6@28x28   -> act -> S2 2x2 subsampling -> 6@14x14
        C3 conv 16@5x5  -> 16@10x10  -> act -> S4 2x2 subsampling -> 16@5x5
        C5 conv 120@5x5 -> 120@1x1   -> act
        F6 linear 84    -> act
        output linear 10 (logits; the paper's RBF output is replaced by cross-entropy)

    ``pool="avg"`` is the paper's subsampling without its trainable coefficient; ``"max"`` is the
    common modern variant. ``c3_table=True`` restricts C3 to the paper's 60 connections (Table I)
    by masking its weight in the forward pass, so the masked weights get no gradient.
    """

    def __init__(self, activation: str = "relu", pool: str = "avg", c3_table: bool = False) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"unknown pool {pool!r}; choose from: avg, max")
        self.act = activations.get(activation)
        self.activation, self.pool, self.c3_table = activation, pool, c3_table
        self.c1 = nn.Conv2d(1, 6, 5)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)
        if c3_table:
            self.register_buffer("c3_mask", c3_connection_mask())
            with torch.no_grad():
                self.c3.weight.mul_(self.c3_mask)

    def _subsample(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.pool == "avg" else F.max_pool2d(x, 2)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        f = self.act.fn
        acts: Dict[str, torch.Tensor] = {}
        x = F.pad(x, (2, 2, 2, 2))                             # (N, 1, 32, 32)
        x = acts["c1"] = f(self.c1(x))                         # (N, 6, 28, 28)
        x = self._subsample(x)                                 # (N, 6, 14, 14)
        if self.c3_table:   # the masked weight; calling the module keeps its hooks (LSUV's) working
            x = acts["c3"] = f(F.conv2d(x, self.c3.weight * self.c3_mask, self.c3.bias))
        else:
            x = acts["c3"] = f(self.c3(x))                     # (N, 16, 10, 10)
        x = self._subsample(x)                                 # (N, 16, 5, 5)
        x = acts["c5"] = f(self.c5(x)).flatten(1)              # (N, 120)
        x = acts["f6"] = f(self.f6(x))                         # (N, 84)
        logits = acts["output"] = self.output(x)               # (N, 10)
        return (logits, acts) if return_activations else logits
