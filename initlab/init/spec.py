"""The two initializer registries, spec strings ("name:key=value,...") and ``initialize``.

``INITIALIZERS`` holds per-weight schemes (filled by ``register_init``), ``MODEL_INITIALIZERS`` the
schemes that need the whole model and a data batch (``lsuv``, ``dbn``). ``parse_spec`` /
``format_spec`` / ``describe`` read and write specs; ``initialize`` applies one to a model.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from initlab.registry import Registry, UnknownNameError, check_name, split_spec


class Limit:
    """The valid values of one initializer parameter, declared next to the function and checked by
    :func:`parse_spec` before any weight is drawn: a finite number (``integer`` for a count) within
    ``low``/``high`` (``open`` ends excluded), or one of ``choices``; ``optional`` admits ``None``."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, open: bool = False,
                 integer: bool = False, choices: Tuple[str, ...] = (), optional: bool = False) -> None:
        self.low, self.high, self.open, self.integer = low, high, open, integer
        self.choices, self.optional = tuple(choices), optional

    def describe(self, key: str) -> str:
        """``"std > 0 (a finite number)"``, ``"mode one of fan_in, fan_out"``."""
        if self.choices:
            return f"{key} one of " + ", ".join(self.choices)
        kind = "an integer" if self.integer else "a finite number"
        lo = "" if self.low is None else f" {'>' if self.open else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{' and' if lo else ''} <= {self.high:g}"
        return f"{key}{lo}{hi} ({kind}{' or None' if self.optional else ''})"

    def ok(self, value: Any) -> bool:
        if value is None or value == "None":
            return self.optional
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.open else value < self.low):
            return False
        return self.high is None or value <= self.high


POSITIVE = Limit(0, open=True)          # a std, a gain, a scale, a learning rate
NON_NEGATIVE = Limit(0)
FINITE = Limit()
COUNT = Limit(1, integer=True)


def limits(**declared: Limit) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: declare the valid values of an initializer's parameters (``@limits(std=POSITIVE)``)."""

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.limits = declared  # type: ignore[attr-defined]
        return fn

    return attach

# =============================================================================================
# The registries and the decorator
# =============================================================================================

#: ``fn(weight, *, generator, activation="relu", **params) -> None``; fills ``weight`` in place.
INITIALIZERS: Registry[Callable[..., None]] = Registry("initializer")
#: ``fn(model, *, generator, data, activation="relu", **params) -> dict``; for data-dependent
#: schemes that need the model and a batch (LSUV). Biases are already set when it is called.
MODEL_INITIALIZERS: Registry[Callable[..., Dict[str, Any]]] = Registry("initializer")

# Keyword arguments every initializer takes that are not user parameters of a spec.
_RESERVED = ("generator", "activation", "data")


def register_init(
    name: str,
    *,
    formula: str,
    bias_init: Optional[Callable[..., None]] = None,
    limits: Optional[Dict[str, Limit]] = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: register a per-weight initializer in :data:`INITIALIZERS`, run under ``no_grad``.

    Args:
        name: the registry name (what a spec string starts with).
        formula: a one-line human description of the distribution, shown by :func:`describe`.
        bias_init: the bias hook. ``None``: :func:`initialize` sets biases to a constant (0
            unless told otherwise). Otherwise ``bias_init(bias, weight, *, generator)`` draws the
            bias of the same layer, right after its weight, unless a constant bias is given.
        limits: the valid values of its parameters (:class:`Limit`), checked by :func:`parse_spec`.

    A name no spec can hold (empty, or with ``:``, ``,``, ``=`` or whitespace: :func:`check_name`) is a
    ValueError here, before any function is registered.
    """
    check_name(name, INITIALIZERS.kind)

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        wrapped = torch.no_grad()(fn)  # functools.wraps keeps __doc__ and the signature
        wrapped.formula = formula  # type: ignore[attr-defined]
        wrapped.bias_init = bias_init  # type: ignore[attr-defined]
        wrapped.limits = dict(limits or {})  # type: ignore[attr-defined]
        return INITIALIZERS.register(name)(wrapped)

    return add


def init_names() -> List[str]:
    """All valid spec names: per-weight initializers, then model-level ones."""
    return INITIALIZERS.names() + MODEL_INITIALIZERS.names()


def _lookup(name: str) -> Tuple[Callable[..., Any], bool]:
    """Return ``(fn, is_model_level)`` for a registered name."""
    if name in INITIALIZERS:
        return INITIALIZERS.get(name), False
    if name in MODEL_INITIALIZERS:
        return MODEL_INITIALIZERS.get(name), True
    raise UnknownNameError(f"unknown initializer {name!r}; choose from: {', '.join(init_names())}")


def init_params(name: str) -> Dict[str, Any]:
    """The user parameters of initializer ``name`` and their defaults (``inspect.Parameter.empty`` if none).

    Example:
        >>> init_params("kaiming")
        {'a': 0.0, 'mode': 'fan_in'}
    """
    fn, _ = _lookup(name)
    sig = inspect.signature(fn)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _RESERVED
    }


# =============================================================================================
# Specs: "name:key=value,..."
# =============================================================================================

def parse_spec(spec: str) -> Tuple[str, Dict[str, Any]]:
    """Parse ``"name"`` or ``"name:key=value,key=value"`` into ``(name, params)``.

    Values become ``int``, ``float`` or ``str`` (in that order of preference). The name must be
    registered and every key must be a parameter of that initializer (see :func:`init_params`);
    otherwise a one-line ``ValueError`` lists the valid names or parameters.

    Example:
        >>> parse_spec("kaiming_uniform:mode=fan_out,a=0.1")
        ('kaiming_uniform', {'mode': 'fan_out', 'a': 0.1})
        >>> parse_spec("zeros")
        ('zeros', {})
    """
    name, params = split_spec(spec, "init")
    _lookup(name)  # unknown name -> UnknownNameError listing the valid ones
    valid = init_params(name)
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for initializer {name!r}; "
                         f"valid: {', '.join(valid) or 'none'}")
    fn, _ = _lookup(name)
    for key, value in params.items():
        limit = getattr(fn, "limits", {}).get(key)
        if limit is not None and not limit.ok(value):
            raise ValueError(f"{name}: need {limit.describe(key)}, got {value!r}")
    return name, params


def format_spec(name: str, params: Optional[Dict[str, Any]] = None) -> str:
    """Inverse of :func:`parse_spec`: ``format_spec("kaiming", {"a": 0.1}) == "kaiming:a=0.1"``."""
    if not params:
        return name
    return name + ":" + ",".join(f"{k}={v}" for k, v in params.items())


def describe(spec: str) -> str:
    """A short human string for reports, with every parameter resolved to its value.

    Example:
        >>> describe("kaiming:mode=fan_out")
        "kaiming(a=0.0, mode='fan_out'): N(0, 2/((1 + a^2) * fan)), fan = fan_in | fan_out"
    """
    name, params = parse_spec(spec)
    fn, _ = _lookup(name)
    resolved = {**init_params(name), **params}
    args = ", ".join(f"{k}={v!r}" for k, v in resolved.items())
    summary = getattr(fn, "formula", None) or (fn.__doc__ or "").strip().splitlines()[0]
    return f"{name}({args}): {summary}"


# =============================================================================================
# Applying a spec to a model
# =============================================================================================

#: Layer types whose weights are initialized (layout as in :func:`fans`). ConvTranspose is left
#: out on purpose: its weight is (in, out/groups, *k), so fans would be swapped.
INIT_LAYER_TYPES: Tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def init_layers(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    """Yield ``(qualified_name, module)`` for every Linear/ConvNd in definition order."""
    for name, m in model.named_modules():
        if isinstance(m, INIT_LAYER_TYPES):
            yield name, m


def initialize(
    model: nn.Module,
    spec: str,
    *,
    generator: torch.Generator,
    activation: str = "relu",
    bias: Union[float, str, None] = None,
    data: Optional[Tensor] = None,
) -> Dict[str, Any]:
    """Initialize every Linear/ConvNd of ``model`` in place from ``spec``, all randomness from ``generator``.

    Layers are visited in definition order (:func:`init_layers`); for each, the weight is
    drawn, then its bias. Biases are set to the constant ``bias``, or drawn from the generator when
    ``bias`` is a spec of a distribution that needs no fans (:data:`BIAS_INITS`, e.g.
    ``"normal:std=0.1"``: zero weights with random biases break the symmetry through the biases
    alone); ``bias=None`` (default) means the method's own default: 0 for every method except
    ``torch_default``, which draws them PyTorch's way (its ``bias_init`` hook). Model-level
    initializers (``lsuv``) get the biases set first, then the whole model and ``data``.

    Args:
        model: the model to initialize in place.
        spec: ``"name"`` or ``"name:key=value,..."`` (see :func:`parse_spec`).
        generator: the source of all randomness (on the parameters' device).
        activation: the network's nonlinearity, for initializers that read a gain from it.
        bias: a constant for every bias, a bias distribution's spec, or ``None`` = the method's
            default (see above).
        data: a batch for data-dependent initializers (required by ``lsuv``; ignored by the others).

    Returns:
        ``{"init": canonical spec, "name", "params", "layers": [names], "bias": value or "torch_default"}``
        plus whatever a model-level initializer reports (``lsuv_iters``, ``lsuv_var``).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
        >>> info = initialize(net, "kaiming:mode=fan_out", generator=torch.Generator().manual_seed(0))
        >>> info["init"], info["layers"], bool((net[3].bias == 0).all())
        ('kaiming:mode=fan_out', ['0', '3'], True)
    """
    name, params = parse_spec(spec)
    fn, model_level = _lookup(name)
    layers = list(init_layers(model))
    bias_hook = None if (model_level or bias is not None) else getattr(fn, "bias_init", None)
    drawn_bias = bias_distribution(bias) if isinstance(bias, str) else None
    const_bias = 0.0 if bias is None or drawn_bias else float(bias)
    info: Dict[str, Any] = {
        "init": format_spec(name, params),
        "name": name,
        "params": params,
        "layers": [n for n, _ in layers],
        "bias": name if bias_hook is not None else (format_spec(*drawn_bias[1:]) if drawn_bias
                                                    else const_bias),
    }
    with torch.no_grad():
        for _, m in layers:
            if not model_level:
                fn(m.weight, generator=generator, activation=activation, **params)
            if m.bias is not None:
                if bias_hook is not None:
                    bias_hook(m.bias, m.weight, generator=generator)
                elif drawn_bias:
                    drawn_bias[0](m.bias, generator=generator, **drawn_bias[2])
                else:
                    m.bias.fill_(const_bias)
    if model_level:
        info.update(fn(model, generator=generator, activation=activation, data=data, **params))
    return info


# initializers that need no fans, so they can draw a bias vector too
BIAS_INITS = ("zeros", "constant", "normal", "uniform", "truncated_normal")


def bias_distribution(spec: str) -> Tuple[Callable[..., None], str, Dict[str, Any]]:
    """(initializer, name, params) of a bias spec such as ``"normal:std=0.1"``; a ValueError names
    the valid choices."""
    name, params = parse_spec(spec)
    if name not in BIAS_INITS:
        raise ValueError(f"a bias distribution must need no fans; choose from: {', '.join(BIAS_INITS)} "
                         f"(e.g. normal:std=0.1), got {spec!r}")
    fn, _ = _lookup(name)
    return fn, name, params
