"""Models by name. Every model's ``forward(x, return_activations=False)`` takes images (N, 1, 28, 28)
in [0, 1]-ish floats and returns logits (N, 10); with ``return_activations=True`` it also returns a
dict ``{layer name: post-activation output}`` so recording can look inside without hooks (hooks do not
mix with ``torch.func.vmap``, which the engine uses to train many models at once).

Weights that an initializer should touch are the ``nn.Conv2d`` / ``nn.Linear`` modules, in
definition order; ``initlab.init.initialize`` walks them.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from initlab import activations
from initlab.registry import Registry

MODELS: Registry = Registry("model")

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


@MODELS.register("lenet5")
def lenet5(activation: str = "relu", pool: str = "avg", c3_table: bool = False) -> LeNet5:
    return LeNet5(activation=activation, pool=pool, c3_table=c3_table)


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


def build(name: str, **options) -> nn.Module:
    return MODELS.get(name)(**options)


# --------------------------------------------------------------------------------------------------
# A plain deep net: for signal-propagation probes and as the DBN's fine-tuned network.
# --------------------------------------------------------------------------------------------------

class MLP(nn.Module):
    """A plain net: ``depth`` hidden layers of ``width`` units, each followed by the activation, then a
    linear output layer — no normalization, no skip connections, so nothing but the initialization
    sets the scale of the signal (the setting of Glorot & Bengio 2010 and He et al. 2015)::

        input C@HxW (MNIST: 1@28x28) -> flatten C*H*W
        fc1 linear width -> act -> ... -> fc{depth} linear width -> act      (N, width)
        output linear num_classes (logits)

    ``conv=True`` swaps every hidden layer for a 3x3 convolution with ``width`` channels and
    padding 1, so the map keeps its size (``conv1`` ... ``conv{depth}``: (N, width, H, W)), and the
    output layer reads the flattened map (width * H * W features): every weight layer is then
    a plain ``y = W x + b`` whose variance the fan formula predicts (a global pooling would not be).

    ``activation`` is a registered name or an :class:`~initlab.activations.Activation` (so a probe can
    pass the identity). The default 784-500-500-10 (``width=500, depth=2``) is the DBN of Hinton,
    Osindero & Teh (2006) without its 2000-unit top layer.
    """

    def __init__(self, activation="relu", width: int = 500, depth: int = 2, conv: bool = False,
                 in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"mlp needs width >= 1 and depth >= 1; got width={width}, depth={depth}")
        self.act = activation if isinstance(activation, activations.Activation) else activations.get(activation)
        self.activation, self.width, self.depth, self.conv = self.act.name, width, depth, conv
        c, h, w = in_channels, image_size, image_size
        prefix = "conv" if conv else "fc"
        self.hidden_names = [f"{prefix}{k}" for k in range(1, depth + 1)]
        fan = c if conv else c * h * w
        for name in self.hidden_names:
            self.add_module(name, nn.Conv2d(fan, width, 3, padding=1) if conv else nn.Linear(fan, width))
            fan = width
        self.output = nn.Linear(width * h * w if conv else width, num_classes)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        f = self.act.fn
        acts: Dict[str, torch.Tensor] = {}
        if not self.conv:
            x = x.flatten(1)                                   # (N, 784)
        for name in self.hidden_names:
            x = acts[name] = f(getattr(self, name)(x))         # (N, width) or (N, width, 28, 28)
        logits = acts["output"] = self.output(x.flatten(1))   # (N, 10)
        return (logits, acts) if return_activations else logits


@MODELS.register("mlp")
def mlp(activation="relu", width: int = 500, depth: int = 2, conv: bool = False,
        in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> MLP:
    return MLP(activation=activation, width=width, depth=depth, conv=conv, in_channels=in_channels,
               image_size=image_size, num_classes=num_classes)


from initlab import convnets  # noqa: E402,F401  (registers more models)
