"""Fully connected nets: the plain deep ``MLP`` and CS231n's two-layer net ``TwoLayerFC``."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn

from initlab import activations

# CS231n assignment 2 (PyTorch notebook) default: a 4000-unit hidden layer for the two-layer net.
HIDDEN = 4000


# --------------------------------------------------------------------------------------------------
# A plain deep net: for signal-propagation probes and as the DBN's fine-tuned network.
# --------------------------------------------------------------------------------------------------

class MLP(nn.Module):
    width_option = "width"          # the setting a width parametrization (μP, NTK) scales

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
    pass the identity). ``multipliers`` ({layer: m}, empty by default) are forward multipliers set by a
    width parametrization (``initlab.init.parametrization``): that layer computes ``m · (W x) + b``;
    ``width_option`` names the setting a parametrization scales. The default 784-500-500-10
    (``width=500, depth=2``) is the DBN of Hinton,
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
        # a plain chain of linear layers (the engine trains it as batched matrix products)
        self.linear_chain = [] if conv else self.hidden_names + ["output"]
        self.multipliers: Dict[str, float] = {}               # forward multipliers (parametrization)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        f, m = self.act.fn, self.multipliers
        acts: Dict[str, torch.Tensor] = {}
        if not self.conv:
            x = x.flatten(1)                                   # (N, 784)
        for name in self.hidden_names:                         # m · (W x) + b as W (m x) + b
            x = acts[name] = f(getattr(self, name)(x * m[name] if name in m else x))  # (N, width) or (N, width, H, W)
        x = x.flatten(1)
        logits = acts["output"] = self.output(x * m["output"] if "output" in m else x)   # (N, 10)
        return (logits, acts) if return_activations else logits


# --------------------------------------------------------------------------------------------------
# Two-layer fully-connected net
# --------------------------------------------------------------------------------------------------

class TwoLayerFC(nn.Module):
    """flatten -> fc1 (``hidden`` units) -> act -> output (``num_classes`` logits).

    With the defaults on MNIST: 784 -> 4000 -> 10, 3,180,010 parameters. ``multipliers`` and
    ``width_option`` as in :class:`MLP` (a width parametrization scales ``hidden``).
    """
    width_option = "hidden"

    def __init__(self, activation: str = "relu", in_channels: int = 1, image_size: int = 28,
                 hidden: int = HIDDEN, num_classes: int = 10) -> None:
        super().__init__()
        self.act = activations.get(activation)
        self.fc1 = nn.Linear(in_channels * image_size * image_size, hidden)
        self.output = nn.Linear(hidden, num_classes)
        self.linear_chain = ["fc1", "output"]
        self.multipliers: Dict[str, float] = {}               # forward multipliers (parametrization)

    def forward(self, x: torch.Tensor, return_activations: bool = False):
        acts: Dict[str, torch.Tensor] = {}
        m = self.multipliers
        x = x.flatten(1)
        x = acts["fc1"] = self.act.fn(self.fc1(x * m["fc1"] if "fc1" in m else x))      # (N, hidden)
        logits = acts["output"] = self.output(x * m["output"] if "output" in m else x)  # (N, num_classes)
        return (logits, acts) if return_activations else logits
