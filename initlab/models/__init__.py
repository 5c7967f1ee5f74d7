"""Models by name: the ``MODELS`` registry, built here from the model modules, and ``build``.

Every model's ``forward(x, return_activations=False)`` takes images (N, 1, 28, 28) in [0, 1]-ish
floats and returns logits (N, 10); with ``return_activations=True`` it also returns a dict
``{layer name: post-activation output}`` so recording can look inside without hooks (hooks do not
mix with ``torch.func.vmap``, which the engine uses to train many models at once).

Weights that an initializer should touch are the ``nn.Conv2d`` / ``nn.Linear`` modules, in
definition order; ``initlab.init.initialize`` walks them.

Modules: ``lenet`` (LeNet-5 and its C3 table), ``mlp`` (the plain deep net and CS231n's two-layer
net), ``convnets`` (CS231n's three-layer ConvNet in three forms), ``layers`` (weight layers,
parameter counts, ``summary``). Each registry entry is a callable ``(**options) -> nn.Module``;
``parse_model`` reads a model named with its settings (``mlp:width=256,depth=30``).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Tuple

import torch.nn as nn

from initlab.models.convnets import three_layer_convnet
from initlab.models.layers import count_parameters, summary, weight_layers
from initlab.models.lenet import C3_TABLE, LeNet5, c3_connection_mask
from initlab.models.mlp import MLP, TwoLayerFC
from initlab.registry import Registry, split_spec

__all__ = [
    "MODELS", "build", "LeNet5", "C3_TABLE", "c3_connection_mask", "MLP", "TwoLayerFC",
    "three_layer_convnet", "weight_layers", "count_parameters", "summary", "settable_options", "parse_model",
]

MODELS: Registry = Registry("model")
MODELS.add("lenet5", LeNet5)
MODELS.add("mlp", MLP)
MODELS.add("two_layer_fc", TwoLayerFC)
MODELS.add("three_layer_convnet", three_layer_convnet)


def build(name: str, **options) -> nn.Module:
    """The registered model ``name`` built with ``options`` (e.g. ``activation="tanh"``)."""
    return MODELS.get(name)(**options)


# set by the experiment (from --activation and the dataset), never by a model spec
FIXED_OPTIONS = ("activation", "in_channels", "image_size", "num_classes")


def settable_options(name: str) -> Dict[str, Any]:
    """``{option: default}`` a model spec may set for the registered model ``name``: its constructor's
    keyword parameters, less :data:`FIXED_OPTIONS`."""
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty and p.name not in FIXED_OPTIONS}


def parse_model(spec: str) -> Tuple[str, Dict[str, Any]]:
    """``"name"`` or ``"name:key=value,..."`` -> ``(name, options)``, each option checked against the
    type of its default (a size: an integer >= 1; a switch: true or false); a one-line ``ValueError``
    names the first bad one.

    Example:
        >>> parse_model("mlp:width=256,depth=30")
        ('mlp', {'width': 256, 'depth': 30})
        >>> parse_model("two_layer_fc:hidden=4000")
        ('two_layer_fc', {'hidden': 4000})
    """
    name, params = split_spec(spec, "model")
    defaults = settable_options(name)
    for key, value in params.items():
        if key not in defaults:
            raise ValueError(f"unknown parameter {key!r} for model {name!r}; valid: {', '.join(defaults) or 'none'}")
        default = defaults[key]
        if isinstance(default, bool):
            switch = {"true": True, "false": False, 1: True, 0: False}.get(value)
            if switch is None:
                raise ValueError(f"{name}: need {key} true or false, got {value!r}")
            params[key] = switch
        elif isinstance(default, int) and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}: need {key} an integer >= 1, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ValueError(f"{name}: need {key} a name, got {value!r}")
    return name, params
