"""Activation functions by name, each with the gain key that ``initlab.init.calculate_gain`` knows.

The registry maps a name to an ``Activation``: the function itself and the nonlinearity name (and
parameter) used to look up its gain, so a model and an initializer never disagree about what follows
a layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from initlab.registry import Registry


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    gain_key: str             # the nonlinearity name for calculate_gain
    gain_param: Optional[float] = None  # e.g. the negative slope of a leaky ReLU
    rectifier: bool = False   # zero on the negative side (dead-unit counting applies)


ACTIVATIONS: Registry[Activation] = Registry("activation")


def _add(act: Activation) -> None:
    ACTIVATIONS.register(act.name)(act)


def scaled_tanh(x: torch.Tensor) -> torch.Tensor:
    """LeCun et al. 1998 ("Efficient BackProp"): f(x) = 1.7159 · tanh(2x/3), so f(±1) = ±1."""
    return 1.7159 * torch.tanh(x * (2.0 / 3.0))


_add(Activation("relu", F.relu, "relu", rectifier=True))
_add(Activation("leaky_relu", lambda x: F.leaky_relu(x, 0.01), "leaky_relu", 0.01))
# Mishkin & Matas 2015 call a slope of 0.33 "very leaky" ReLU.
_add(Activation("very_leaky_relu", lambda x: F.leaky_relu(x, 0.33), "leaky_relu", 0.33))
_add(Activation("tanh", torch.tanh, "tanh"))
_add(Activation("scaled_tanh", scaled_tanh, "scaled_tanh"))
_add(Activation("sigmoid", torch.sigmoid, "sigmoid"))
_add(Activation("selu", F.selu, "selu"))


def get(name: str) -> Activation:
    return ACTIVATIONS.get(name)
