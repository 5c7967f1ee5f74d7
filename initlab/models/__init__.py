"""Models by name: the ``MODELS`` registry, built here from the model modules, and ``build``.

Every model's ``forward(x, return_activations=False)`` takes images (N, 1, 28, 28) in [0, 1]-ish
floats and returns logits (N, 10); with ``return_activations=True`` it also returns a dict
``{layer name: post-activation output}`` so recording can look inside without hooks (hooks do not
mix with ``torch.func.vmap``, which the engine uses to train many models at once).

Weights that an initializer should touch are the ``nn.Conv2d`` / ``nn.Linear`` modules, in
definition order; ``initlab.init.initialize`` walks them.

Modules: ``lenet`` (LeNet-5 and its C3 table), ``mlp`` (the plain deep net and CS231n's two-layer
net), ``convnets`` (CS231n's three-layer ConvNet in three forms), ``layers`` (weight layers,
parameter counts, ``summary``). Each registry entry is a callable ``(**options) -> nn.Module``.
"""
from __future__ import annotations

import torch.nn as nn

from initlab.models.convnets import three_layer_convnet
from initlab.models.layers import count_parameters, summary, weight_layers
from initlab.models.lenet import C3_TABLE, LeNet5, c3_connection_mask
from initlab.models.mlp import MLP, TwoLayerFC
from initlab.registry import Registry

__all__ = [
    "MODELS", "build", "LeNet5", "C3_TABLE", "c3_connection_mask", "MLP", "TwoLayerFC",
    "three_layer_convnet", "weight_layers", "count_parameters", "summary",
]

MODELS: Registry = Registry("model")
MODELS.add("lenet5", LeNet5)
MODELS.add("mlp", MLP)
MODELS.add("two_layer_fc", TwoLayerFC)
MODELS.add("three_layer_convnet", three_layer_convnet)


def build(name: str, **options) -> nn.Module:
    """The registered model ``name`` built with ``options`` (e.g. ``activation="tanh"``)."""
    return MODELS.get(name)(**options)
