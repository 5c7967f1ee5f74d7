"""The Python API's initializers and models: initialize any module, register your own init, build a model."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import nn

from initlab import init, models, user_inits

__all__ = ["initialize", "register_init", "build_model", "init_names", "model_names"]

PathLike = Union[str, Path]



def initialize(module: nn.Module, spec: str, *, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None, activation: str = "relu",
               bias: Optional[float] = None, data: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """Initialize every Linear/ConvNd layer of ``module`` in place from ``spec``, in the way of
    ``torch.nn.init`` but for a whole model; returns what was done.

    Args:
        module: any ``nn.Module``; its ``nn.Linear`` and ``nn.Conv1d/2d/3d`` layers are initialized, in
            definition order (weight, then bias), the rest is left alone.
        spec: a registered name (:func:`init_names`), with parameters after a colon:
            ``"kaiming:mode=fan_out"``, ``"normal:std=0.05"``.
        seed: draw from a new ``torch.Generator`` seeded with this; the same seed gives the same
            weights. Give ``seed`` or ``generator``, or neither: then a fresh seed is drawn (from the
            operating system, never from torch's global generator) and returned.
        generator: draw from this generator (on the parameters' device) instead.
        activation: the nonlinearity after each layer, for the inits whose gain depends on it.
        bias: a constant for every bias; None: the init's default (0, except ``torch_default``).
        data: a batch of inputs, for the data-dependent inits (``lsuv``, ``dbn``).

    Returns:
        ``{"init", "name", "params", "layers", "bias", "seed"}`` (``seed`` is None when a generator was
        given), plus what a data-dependent init reports (``lsuv_iters``, ...).

    Example:
        >>> import initlab
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> info = initlab.initialize(net, "kaiming", seed=0)
        >>> info["init"], info["layers"], info["seed"]
        ('kaiming', ['0', '2'], 0)
        >>> round(net[0].weight.std().item(), 3)        # sqrt(2 / fan_in) = sqrt(2 / 784)
        0.051
        >>> w = net[0].weight.clone()
        >>> _ = initlab.initialize(net, "kaiming", seed=0)
        >>> bool((net[0].weight == w).all())              # same seed, same draw
        True
        >>> info = initlab.initialize(net, "xavier")      # no seed: a fresh one, to draw it again
        >>> isinstance(info["seed"], int)
        True
    """
    if seed is not None and generator is not None:
        raise ValueError("give seed or generator, not both")
    if generator is None:
        seed = secrets.randbelow(2**32) if seed is None else int(seed)
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        generator = torch.Generator(device=device).manual_seed(seed)
    info = init.initialize(module, spec, generator=generator, activation=activation, bias=bias, data=data)
    info["seed"] = seed
    return info


def register_init(name: str, *, formula: str, bias_init: Optional[Callable[..., None]] = None,
                  limits: Optional[Dict[str, Any]] = None):
    """Decorator: register your own per-weight initializer under ``name``, usable everywhere an init
    name is (:func:`initialize`, :func:`study` -- its worker processes included --, the probe).

    The function is ``fn(weight, *, generator, activation="relu", **params) -> None`` and fills
    ``weight`` in place (it runs under ``torch.no_grad``), drawing only from ``generator``; its
    keyword parameters with defaults become the spec's parameters (``"name:scale=2"``). ``formula``
    is the one line reports show; ``limits`` the valid values of the parameters
    (``{"scale": initlab.init.spec.Limit(0, open=True)}``), checked before any training. This is
    :func:`initlab.init.register_init`, except that running a notebook cell again redefines an
    initializer the cell (``__main__``) registered before.

    Example:
        >>> import initlab, torch
        >>> @initlab.register_init("scaled_normal", formula="N(0, scale^2 / fan_in)")
        ... def scaled_normal(weight, *, generator, activation="relu", scale=1.0):
        ...     fan_in, _ = initlab.init.fans(weight)
        ...     weight.normal_(0.0, scale / fan_in ** 0.5, generator=generator)
        >>> "scaled_normal" in initlab.init_names()
        True
        >>> net = torch.nn.Linear(400, 10)
        >>> _ = initlab.initialize(net, "scaled_normal:scale=2", seed=0)
        >>> round(net.weight.std().item(), 1)            # 2 / sqrt(400)
        0.1

    A name that no spec can hold (empty, or with ``:``, ``,``, ``=`` or whitespace) raises ValueError here,
    at registration.
    """
    # the name is checked now, at registration, not when the decorated function arrives
    register = init.register_init(name, formula=formula, bias_init=bias_init, limits=limits)

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        if user_inits.module_of(fn) == user_inits.INTERACTIVE:
            user_inits.forget_interactive(name)
        return register(fn)

    return add


def build_model(name: str, **options) -> nn.Module:
    """A registered model (:func:`model_names`), built with ``options`` (``activation``, and per model
    ``pool``, ``c3_table``, ``width``, ``depth``, ...); its weights are PyTorch's defaults until you
    :func:`initialize` it.

    Example:
        >>> import initlab
        >>> net = initlab.build_model("mlp", width=64, depth=3, activation="tanh")
        >>> sum(p.numel() for p in net.parameters())
        59210
    """
    return models.build(name, **options)


def init_names() -> List[str]:
    """Every registered initializer (yours included).

    Example:
        >>> import initlab
        >>> initlab.init_names()[:6]
        ['variance_scaling', 'zeros', 'uniform', 'normal', 'truncated_normal', 'xavier']
    """
    return init.init_names()


def model_names() -> List[str]:
    """Every registered model.

    Example:
        >>> import initlab
        >>> initlab.model_names()[:2]
        ['lenet5', 'mlp']
    """
    return models.MODELS.names()


