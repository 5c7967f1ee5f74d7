"""Weight initializers: one fan helper, one gain table, one variance-scaling core, two registries.

Reading order:
  1. ``fans`` and ``calculate_gain``: the only sources of fans and gains.
  2. ``variance_scaling``: the one core; Glorot, He and LeCun are small specializations of it.
  3. ``INITIALIZERS``: per-weight schemes ``fn(weight, *, generator, activation, **params) -> None``.
  4. ``MODEL_INITIALIZERS``: schemes that need the whole model and a data batch (``lsuv``).
  5. ``parse_spec`` / ``initialize`` / ``describe``: what the rest of initlab calls.

Randomness is explicit: every draw comes from the ``torch.Generator`` passed in (on the
weight's device), so results are reproducible and the global RNG is never touched.
"""
from __future__ import annotations

import inspect
import math
import re
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from initlab.registry import Registry, UnknownNameError

__all__ = [
    "fans", "calculate_gain", "gain_names", "variance_scaling", "TRUNC_STD_FACTOR",
    "INITIALIZERS", "MODEL_INITIALIZERS", "register_init", "init_names", "init_params",
    "INIT_LAYER_TYPES", "init_layers", "parse_spec", "format_spec", "describe", "initialize",
]

# =============================================================================================
# Fans
# =============================================================================================


def fans(weight: Tensor) -> Tuple[int, int]:
    r"""Return ``(fan_in, fan_out)`` of a Linear or Conv weight.

    Layout assumed (PyTorch's): Linear ``(out, in)``; ConvNd ``(out, in/groups, *kernel)``.
    With ``receptive_field = prod(kernel)`` (1 for Linear):

    .. math::
        \text{fan\_in} = \text{in} \cdot \text{receptive\_field}, \qquad
        \text{fan\_out} = \text{out} \cdot \text{receptive\_field}

    For a grouped conv, ``fan_in`` is per group (what each output unit sees). ConvTranspose
    weights are laid out ``(in, out/groups, *kernel)``, so for them the two are swapped.

    Args:
        weight: a tensor with at least 2 dimensions.

    Example:
        >>> fans(torch.empty(1000, 800))        # nn.Linear(800, 1000).weight
        (800, 1000)
        >>> fans(torch.empty(64, 32, 5, 5))     # nn.Conv2d(32, 64, 5).weight
        (800, 1600)
    """
    if weight.dim() < 2:
        raise ValueError(f"fans need a weight with >= 2 dims (out, in, *kernel); got shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])  # kh * kw for Conv2d, 1 for Linear
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


# =============================================================================================
# Gains: the one table
# =============================================================================================

_LEAKY_RELU_DEFAULT_SLOPE = 0.01  # nn.LeakyReLU's default negative_slope


def _leaky_relu_gain(param: Optional[float]) -> float:
    a = _LEAKY_RELU_DEFAULT_SLOPE if param is None else param
    if isinstance(a, bool) or not isinstance(a, (int, float)):
        raise ValueError(f"leaky_relu gain needs a numeric negative slope; got {param!r}")
    return math.sqrt(2.0 / (1.0 + a**2))


def _const(g: float) -> Callable[[Optional[float]], float]:
    return lambda param: g


# name -> gain(param). The gain g is the factor by which std = g / sqrt(fan) keeps the second
# moment of activations constant through "linear layer -> nonlinearity" (He et al. 2015).
_GAINS: Dict[str, Callable[[Optional[float]], float]] = {
    # No nonlinearity (or a linear layer type passed as its own "nonlinearity", torch-style).
    "linear": _const(1.0), "identity": _const(1.0),
    "conv1d": _const(1.0), "conv2d": _const(1.0), "conv3d": _const(1.0),
    "conv_transpose1d": _const(1.0), "conv_transpose2d": _const(1.0), "conv_transpose3d": _const(1.0),
    # Sigmoid: torch's value; slope 1/4 at 0, no clean fixed point, kept for compatibility.
    "sigmoid": _const(1.0),
    # tanh: 5/3, torch's value; 1/sqrt(E[tanh(z)^2]) = 1.59 for z ~ N(0, 1).
    "tanh": _const(5.0 / 3.0),
    # ReLU zeroes half the mass: E[relu(z)^2] = Var(z)/2, hence sqrt(2) (He et al. 2015).
    "relu": _const(math.sqrt(2.0)),
    # Leaky ReLU with negative slope a (param, default 0.01): E[f(z)^2] = (1 + a^2)/2 Var(z).
    "leaky_relu": _leaky_relu_gain,
    # Mishkin & Matas (2015)'s "very leaky" ReLU: slope 0.33 unless given.
    "very_leaky_relu": lambda param: _leaky_relu_gain(0.33 if param is None else param),
    # SELU: 3/4 as in torch (chosen there so that kaiming_normal_/xavier_normal_ stay close to
    # the self-normalizing regime); Klambauer et al. 2017 themselves use lecun_normal (gain 1).
    "selu": _const(0.75),
    # LeCun's f(x) = 1.7159 tanh(2x/3) (Efficient BackProp, 1998): 1.7159 = 1/tanh(2/3) makes
    # f(+-1) = +-1, and LeCun pairs it with std = 1/sqrt(fan_in), i.e. gain 1, so unit-variance
    # inputs give roughly unit-variance outputs. We keep LeCun's design: 1. (The exact
    # second-moment fixed point would be 1/sqrt(E[f(z)^2]) = 1/sqrt(0.750) = 1.15, z ~ N(0, 1).)
    "scaled_tanh": _const(1.0),
    # Maxout with k = 2 pieces: for iid z1, z2 ~ N(0, s^2), max^2 + min^2 = z1^2 + z2^2 and
    # by symmetry E[max(z1, z2)^2] = s^2, so the forward second moment is preserved: gain 1.
    # (sqrt(2), treating maxout like ReLU, is also seen in practice; for k > 2, E[max^2] > s^2.)
    "maxout": _const(1.0),
}


def gain_names() -> List[str]:
    """Names accepted by :func:`calculate_gain`."""
    return list(_GAINS)


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    r"""Return the recommended gain for a nonlinearity: the one table every init reads.

    ================= ==============================================
    nonlinearity      gain
    ================= ==============================================
    linear, identity,  :math:`1`
    conv{1,2,3}d,
    conv_transpose*
    sigmoid           :math:`1`
    tanh              :math:`\frac{5}{3}`
    relu              :math:`\sqrt{2}`
    leaky_relu        :math:`\sqrt{\frac{2}{1 + a^2}}`, ``param`` = a (default 0.01)
    very_leaky_relu   the same with a = 0.33 by default
    selu              :math:`\frac{3}{4}`
    scaled_tanh       :math:`1` (LeCun 1998: :math:`1.7159 \tanh(2x/3)` with std :math:`1/\sqrt{\text{fan\_in}}`)
    maxout            :math:`1` (2 pieces: :math:`E[\max(z_1, z_2)^2] = E[z^2]`)
    ================= ==============================================

    Paper: He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers" (the sqrt(2) derivation).

    Args:
        nonlinearity: a name from the table (see :func:`gain_names`).
        param: the negative slope for ``leaky_relu``; ignored otherwise.

    Example:
        >>> calculate_gain("relu") == math.sqrt(2)
        True
        >>> round(calculate_gain("leaky_relu", 0.2), 4)
        1.3868
    """
    try:
        fn = _GAINS[nonlinearity]
    except KeyError:
        raise UnknownNameError(
            f"unknown nonlinearity {nonlinearity!r} for calculate_gain; choose from: {', '.join(_GAINS)}"
        ) from None
    return fn(param)


# =============================================================================================
# The variance-scaling core
# =============================================================================================

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "uniform", "truncated_normal")
_TRUNC_AT = 2.0  # truncated normals are cut at +-2 sigma of the underlying normal (as torch, Keras, TF)


def _phi(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _Phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# Std of N(0, 1) truncated to [-c, c]: sqrt(1 - 2c phi(c) / (Phi(c) - Phi(-c))) = 0.87962566 for c = 2.
TRUNC_STD_FACTOR = math.sqrt(1.0 - 2.0 * _TRUNC_AT * _phi(_TRUNC_AT) / (_Phi(_TRUNC_AT) - _Phi(-_TRUNC_AT)))


def _trunc_normal_(weight: Tensor, mean: float, std: float, generator: torch.Generator) -> None:
    """Fill with N(mean, std^2) truncated to mean +- 2 std, by inverting the CDF.

    One uniform draw per entry, so the generator advances by a fixed amount. (torch 2.13's
    ``nn.init.trunc_normal_`` uses rejection sampling: same distribution, different draws.)
    """
    lo, hi = _Phi(-_TRUNC_AT), _Phi(_TRUNC_AT)
    weight.uniform_(2 * lo - 1, 2 * hi - 1, generator=generator)  # erf-space uniform
    weight.erfinv_()                                               # -> N(0, 1/2) truncated
    weight.mul_(std * math.sqrt(2.0)).add_(mean)
    weight.clamp_(min=mean - _TRUNC_AT * std, max=mean + _TRUNC_AT * std)  # float round-off only


def _choose(value: str, valid: Tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; choose from: {', '.join(valid)}")
    return value


def _fan(weight: Tensor, mode: str) -> float:
    fan_in, fan_out = fans(weight)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[_choose(mode, _MODES, "mode")]
    if n == 0:
        raise ValueError(f"{mode} is 0 for a weight of shape {tuple(weight.shape)}")
    return n


# =============================================================================================
# Per-weight initializers: registry and decorator
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
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: register a per-weight initializer in :data:`INITIALIZERS`, run under ``no_grad``.

    Args:
        name: the registry name (what a spec string starts with).
        formula: a one-line human description of the distribution, shown by :func:`describe`.
        bias_init: the bias hook. ``None``: :func:`initialize` sets biases to a constant (0
            unless told otherwise). Otherwise ``bias_init(bias, weight, *, generator)`` draws the
            bias of the same layer, right after its weight, unless a constant bias is given.
    """

    def add(fn: Callable[..., None]) -> Callable[..., None]:
        wrapped = torch.no_grad()(fn)  # functools.wraps keeps __doc__ and the signature
        wrapped.formula = formula  # type: ignore[attr-defined]
        wrapped.bias_init = bias_init  # type: ignore[attr-defined]
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
# Per-weight initializers
# =============================================================================================


@register_init("variance_scaling", formula="zero mean, variance scale/n, n = fan_in | fan_out | fan_avg")
def variance_scaling(
    weight: Tensor,
    *,
    generator: torch.Generator,
    activation: str = "relu",
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "normal",
) -> None:
    r"""Fill ``weight`` with zero-mean values of variance ``scale / n``: the core of Glorot, He, LeCun.

    Paper: the Keras ``VarianceScaling`` initializer, which unifies Glorot & Bengio (2010),
    He et al. (2015) and LeCun et al. (1998).

    With :math:`n` = ``fan_in``, ``fan_out`` or :math:`(\text{fan\_in} + \text{fan\_out})/2`
    (``mode`` = ``fan_in`` | ``fan_out`` | ``fan_avg``, see :func:`fans`) and
    :math:`\sigma = \sqrt{\text{scale} / n}`:

    .. math::
        \text{normal}: \mathcal{N}(0, \sigma^2) \qquad
        \text{uniform}: \mathcal{U}(-\sqrt{3}\sigma, \sqrt{3}\sigma) \qquad
        \text{truncated\_normal}: \mathcal{N}(0, (\sigma / 0.8796)^2) \text{ cut at } \pm 2\sigma / 0.8796

    All three have standard deviation exactly :math:`\sigma` (for ``truncated_normal`` the
    underlying normal is widened by 1/0.87962566, the std of N(0, 1) cut at +-2, as Keras does).

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness (on ``weight``'s device).
        activation: unused (the scale is explicit); accepted so every initializer has one signature.
        scale: the variance numerator (1 for LeCun, 2 for He/ReLU, gain^2 in general).
        mode: which fan divides the variance: ``fan_in`` (forward), ``fan_out`` (backward), ``fan_avg``.
        distribution: ``normal``, ``uniform`` or ``truncated_normal``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.empty(512, 256)
        >>> variance_scaling(w, generator=g, scale=2.0, mode="fan_in", distribution="uniform")
        >>> bool(w.abs().max() <= math.sqrt(3 * 2.0 / 256))
        True
        >>> round(w.std().item() / math.sqrt(2.0 / 256), 1)
        1.0
    """
    _choose(distribution, _DISTRIBUTIONS, "distribution")
    if scale < 0:
        raise ValueError(f"variance_scaling needs scale >= 0; got {scale}")
    std = math.sqrt(scale / _fan(weight, mode))
    if distribution == "normal":
        weight.normal_(0.0, std, generator=generator)
    elif distribution == "uniform":
        bound = math.sqrt(3.0) * std  # Var U(-b, b) = b^2 / 3
        weight.uniform_(-bound, bound, generator=generator)
    else:
        _trunc_normal_(weight, 0.0, std / TRUNC_STD_FACTOR, generator)


@register_init("zeros", formula="0")
def zeros(weight: Tensor, *, generator: torch.Generator, activation: str = "relu") -> None:
    r"""Fill ``weight`` with zeros: the degenerate baseline (every unit in a layer stays identical).

    Paper: none; the symmetry problem it shows is discussed in Rumelhart, Hinton & Williams (1986).

    .. math::
        W = 0

    Args:
        weight: the tensor to fill in place.
        generator: unused (no randomness); accepted so every initializer has one signature.
        activation: unused.

    Example:
        >>> w = torch.ones(3, 4)
        >>> zeros(w, generator=torch.Generator().manual_seed(0))
        >>> w.abs().sum().item()
        0.0
    """
    weight.zero_()


@register_init("uniform", formula="U(low, high)")
def uniform(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", low: float = -1.0, high: float = 1.0
) -> None:
    r"""Fill ``weight`` from a fixed uniform distribution, ignoring fans (the lab's naive baseline).

    Paper: none (the naive scheme Glorot & Bengio, 2010, compare against).

    .. math::
        W_{ij} \sim \mathcal{U}(\text{low}, \text{high}), \quad \text{default } \mathcal{U}(-1, 1)

    Args:
        weight: the tensor to fill in place.
        generator: the source of all randomness.
        activation: unused.
        low, high: the bounds.

    Example:
        >>> w = torch.empty(100, 100)
        >>> uniform(w, generator=torch.Generator().manual_seed(0))
        >>> bool(w.min() >= -1 and w.max() <= 1)
        True
    """
    if not low < high:
        raise ValueError(f"uniform needs low < high; got low={low}, high={high}")
    weight.uniform_(low, high, generator=generator)


@register_init("normal", formula="N(mean, std^2)")
def normal(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", mean: float = 0.0, std: float = 0.1
) -> None:
    r"""Fill ``weight`` from a fixed normal distribution, ignoring fans (the lab's naive baseline).

    Paper: none (a common fixed-std baseline, e.g. std 0.01 in Krizhevsky et al., 2012).

    .. math::
        W_{ij} \sim \mathcal{N}(\text{mean}, \text{std}^2), \quad \text{default } \mathcal{N}(0, 0.1^2)

    Args:
        weight: the tensor to fill in place.
        generator: the source of all randomness.
        activation: unused.
        mean, std: the distribution's parameters.

    Example:
        >>> w = torch.empty(500, 400)
        >>> normal(w, generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item(), 2)
        0.1
    """
    weight.normal_(mean, std, generator=generator)


@register_init("truncated_normal", formula="N(mean, std^2) cut at mean +- 2 std (sample std 0.88 std)")
def truncated_normal(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", mean: float = 0.0, std: float = 0.1
) -> None:
    r"""Fill ``weight`` from a normal truncated at :math:`\pm 2` std, with ``std`` that of the *underlying* normal.

    Paper: none; the convention of TensorFlow/Keras ``TruncatedNormal``, ``torch.nn.init.trunc_normal_``
    and timm (ViT's ``trunc_normal_(std=.02)``, Dosovitskiy et al., 2021).

    .. math::
        W_{ij} \sim \mathcal{N}(\text{mean}, \text{std}^2) \text{ conditioned on }
        |W_{ij} - \text{mean}| \le 2\,\text{std}, \qquad
        \operatorname{Std}(W) = 0.8796\,\text{std}

    Choice: ``std`` is *not* rescaled, so ``truncated_normal:std=0.02`` means what it means in
    the ViT/timm literature; the samples' std is 0.87962566 * ``std``. For a truncated normal
    with exact target variance use ``variance_scaling:distribution=truncated_normal``.

    Args:
        weight: the tensor to fill in place.
        generator: the source of all randomness.
        activation: unused.
        mean, std: mean and std of the underlying (untruncated) normal.

    Example:
        >>> w = torch.empty(500, 400)
        >>> truncated_normal(w, generator=torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= 0.2), round(w.std().item(), 3)
        (True, 0.088)
    """
    if std <= 0:
        raise ValueError(f"truncated_normal needs std > 0; got {std}")
    _trunc_normal_(weight, mean, std, generator)


@register_init("xavier", formula="N(0, gain^2 * 2/(fan_in + fan_out))")
def xavier(weight: Tensor, *, generator: torch.Generator, activation: str = "relu", gain: float = 1.0) -> None:
    r"""Glorot/Xavier normal: keep variance between the forward and backward fans.

    Paper: Glorot & Bengio (2010), "Understanding the difficulty of training deep feedforward
    neural networks". Also known as Glorot normal; ``torch.nn.init.xavier_normal_``.

    .. math::
        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad
        \sigma = \text{gain} \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    = :func:`variance_scaling` with ``scale = gain**2``, ``mode = "fan_avg"``. The lab defines
    it with gain 1 whatever the activation; pass ``gain`` to change that.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused (gain is 1 by the lab's definition).
        gain: multiplies the std.

    Example:
        >>> w = torch.empty(1000, 800)
        >>> xavier(w, generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item() / math.sqrt(2 / 1800), 1)
        1.0
    """
    variance_scaling(weight, generator=generator, scale=gain**2, mode="fan_avg", distribution="normal")


@register_init("xavier_uniform", formula="U(+-gain * sqrt(6/(fan_in + fan_out)))")
def xavier_uniform(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", gain: float = 1.0
) -> None:
    r"""Glorot/Xavier uniform: the uniform version of :func:`xavier`.

    Paper: Glorot & Bengio (2010), eq. 16. Also known as Glorot uniform; ``torch.nn.init.xavier_uniform_``.

    .. math::
        W_{ij} \sim \mathcal{U}(-b, b), \qquad
        b = \text{gain} \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    = :func:`variance_scaling` with ``scale = gain**2``, ``mode = "fan_avg"``, uniform.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused (gain is 1 by default, as for ``xavier``).
        gain: multiplies the bound.

    Example:
        >>> w = torch.empty(1000, 800)
        >>> xavier_uniform(w, generator=torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= math.sqrt(6 / 1800))
        True
    """
    variance_scaling(weight, generator=generator, scale=gain**2, mode="fan_avg", distribution="uniform")


@register_init("kaiming", formula="N(0, 2/((1 + a^2) * fan)), fan = fan_in | fan_out")
def kaiming(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", a: float = 0.0, mode: str = "fan_in"
) -> None:
    r"""He/Kaiming normal: preserve the second moment through (leaky) ReLUs.

    Paper: He, Zhang, Ren & Sun (2015), "Delving Deep into Rectifiers: Surpassing Human-Level
    Performance on ImageNet Classification". Also known as He normal; ``torch.nn.init.kaiming_normal_``
    with ``nonlinearity="leaky_relu"``.

    .. math::
        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad
        \sigma = \sqrt{\frac{2}{(1 + a^2)\,\text{fan}}}

    with ``a`` the negative slope (0 for ReLU) and ``fan`` = ``fan_in`` (forward, default) or
    ``fan_out`` (backward). = :func:`variance_scaling` with ``scale = 2/(1+a**2)``.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused (the lab's kaiming keeps ``a = 0`` unless ``a`` is given).
        a: negative slope of the rectifier that follows.
        mode: ``fan_in`` or ``fan_out``.

    Example:
        >>> w = torch.empty(1000, 800)
        >>> kaiming(w, generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item() / math.sqrt(2 / 800), 1)
        1.0
    """
    _choose(mode, ("fan_in", "fan_out"), "mode")
    variance_scaling(weight, generator=generator, scale=2.0 / (1.0 + a**2), mode=mode, distribution="normal")


@register_init("kaiming_uniform", formula="U(+-sqrt(6/((1 + a^2) * fan))), fan = fan_in | fan_out")
def kaiming_uniform(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", a: float = 0.0, mode: str = "fan_in"
) -> None:
    r"""He/Kaiming uniform: the uniform version of :func:`kaiming`.

    Paper: He, Zhang, Ren & Sun (2015). Also known as He uniform; ``torch.nn.init.kaiming_uniform_``
    with ``nonlinearity="leaky_relu"``.

    .. math::
        W_{ij} \sim \mathcal{U}(-b, b), \qquad b = \sqrt{\frac{6}{(1 + a^2)\,\text{fan}}}

    = :func:`variance_scaling` with ``scale = 2/(1+a**2)``, uniform. ``a = sqrt(5)`` gives
    PyTorch's layer default :math:`b = 1/\sqrt{\text{fan\_in}}` (see :func:`torch_default`).

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused.
        a: negative slope of the rectifier that follows (any real number).
        mode: ``fan_in`` or ``fan_out``.

    Example:
        >>> w = torch.empty(64, 32, 5, 5)
        >>> kaiming_uniform(w, generator=torch.Generator().manual_seed(0), mode="fan_out")
        >>> bool(w.abs().max() <= math.sqrt(6 / 1600))
        True
    """
    _choose(mode, ("fan_in", "fan_out"), "mode")
    variance_scaling(weight, generator=generator, scale=2.0 / (1.0 + a**2), mode=mode, distribution="uniform")


@register_init("lecun_normal", formula="N(0, 1/fan_in)")
def lecun_normal(weight: Tensor, *, generator: torch.Generator, activation: str = "relu") -> None:
    r"""LeCun normal: unit forward variance for a linear (or scaled-tanh, or SELU) layer.

    Paper: LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp", section 4.6. Also the
    init of self-normalizing networks (Klambauer et al., 2017).

    .. math::
        W_{ij} \sim \mathcal{N}(0, \sigma^2), \qquad \sigma = \frac{1}{\sqrt{\text{fan\_in}}}

    = :func:`variance_scaling` with ``scale = 1``, ``mode = "fan_in"``.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused.

    Example:
        >>> w = torch.empty(1000, 800)
        >>> lecun_normal(w, generator=torch.Generator().manual_seed(0))
        >>> round(w.std().item() * math.sqrt(800), 1)
        1.0
    """
    variance_scaling(weight, generator=generator, scale=1.0, mode="fan_in", distribution="normal")


@register_init("lecun_uniform", formula="U(+-sqrt(3/fan_in))")
def lecun_uniform(weight: Tensor, *, generator: torch.Generator, activation: str = "relu") -> None:
    r"""LeCun uniform: the uniform version of :func:`lecun_normal`.

    Paper: LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp".

    .. math::
        W_{ij} \sim \mathcal{U}(-b, b), \qquad b = \sqrt{\frac{3}{\text{fan\_in}}}

    = :func:`variance_scaling` with ``scale = 1``, ``mode = "fan_in"``, uniform.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused.

    Example:
        >>> w = torch.empty(1000, 800)
        >>> lecun_uniform(w, generator=torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= math.sqrt(3 / 800))
        True
    """
    variance_scaling(weight, generator=generator, scale=1.0, mode="fan_in", distribution="uniform")


@register_init("orthogonal", formula="gain * Q, Q Haar-random (semi-)orthogonal (out, in*k); gain None = calculate_gain(activation)")
def orthogonal(
    weight: Tensor, *, generator: torch.Generator, activation: str = "relu", gain: Optional[float] = None
) -> None:
    r"""Fill ``weight`` with a random (semi-)orthogonal matrix times ``gain``.

    Paper: Saxe, McClelland & Ganguli (2013), "Exact solutions to the nonlinear dynamics of
    learning in deep linear neural networks". ``torch.nn.init.orthogonal_``.

    The weight is viewed as :math:`W \in \mathbb{R}^{\text{out} \times \text{in} \cdot k_h k_w}`.
    Take :math:`A` with iid :math:`\mathcal{N}(0, 1)` entries (transposed if wide),
    :math:`A = QR`, and :math:`Q \leftarrow Q \operatorname{diag}(\operatorname{sign} R_{ii})`
    (the sign fix makes Q Haar-distributed, Mezzadri 2007). Then :math:`W = \text{gain}\, Q` and

    .. math::
        W W^\top = \text{gain}^2 I \ (\text{out} \le \text{in} \cdot k), \qquad
        W^\top W = \text{gain}^2 I \ (\text{otherwise})

    so each entry has std about :math:`\text{gain} / \sqrt{\max(\text{out}, \text{in} \cdot k)}`.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: gives the default gain, ``calculate_gain(activation)``.
        gain: multiplies Q; default :func:`calculate_gain` of ``activation``.

    Example:
        >>> w = torch.empty(3, 5)
        >>> orthogonal(w, generator=torch.Generator().manual_seed(0), gain=1.0)
        >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-5)
        True
    """
    if weight.dim() < 2:
        raise ValueError(f"orthogonal needs a weight with >= 2 dims; got shape {tuple(weight.shape)}")
    g = calculate_gain(activation) if gain is None else gain
    rows = weight.shape[0]
    cols = weight.numel() // rows                      # in * kh * kw
    a = weight.new_empty(rows, cols).normal_(0.0, 1.0, generator=generator)  # (out, in*k)
    if rows < cols:
        a = a.T                                        # QR needs a tall matrix: (in*k, out)
    q, r = torch.linalg.qr(a)                          # q: orthonormal columns
    q = q * torch.diagonal(r).sign()                   # Haar sign correction
    if rows < cols:
        q = q.T                                        # back to (out, in*k)
    weight.copy_(q.reshape(weight.shape)).mul_(g)


def _torch_default_bias(bias: Tensor, weight: Tensor, *, generator: torch.Generator) -> None:
    """PyTorch's Linear/ConvNd bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (0 if fan_in is 0)."""
    fan_in, _ = fans(weight)
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    bias.uniform_(-bound, bound, generator=generator)


@register_init("torch_default", formula="weight U(+-1/sqrt(fan_in)); bias U(+-1/sqrt(fan_in)) unless a bias is given",
               bias_init=_torch_default_bias)
def torch_default(weight: Tensor, *, generator: torch.Generator, activation: str = "relu") -> None:
    r"""What ``nn.Linear`` / ``nn.ConvNd.reset_parameters`` do, drawn from ``generator``.

    Paper: none; PyTorch's layer default (``kaiming_uniform_(w, a=math.sqrt(5))``, inherited
    from Lua Torch's ``1/sqrt(fan_in)`` rule).

    .. math::
        W_{ij} \sim \mathcal{U}(-b, b), \quad b = \sqrt{\frac{6}{(1 + 5)\,\text{fan\_in}}}
        = \frac{1}{\sqrt{\text{fan\_in}}}, \qquad
        \text{bias}_i \sim \mathcal{U}\Big(-\frac{1}{\sqrt{\text{fan\_in}}}, \frac{1}{\sqrt{\text{fan\_in}}}\Big)

    The bias is drawn through this initializer's ``bias_init`` hook by :func:`initialize`, right
    after its layer's weight, in PyTorch's order; so a model built after ``torch.manual_seed(s)``
    is reproduced exactly by ``initialize(model, "torch_default", generator=Generator().manual_seed(s))``.
    An explicit ``bias=`` given to :func:`initialize` overrides the draw.

    Args:
        weight: the tensor to fill in place, laid out as in :func:`fans`.
        generator: the source of all randomness.
        activation: unused.

    Example:
        >>> w = torch.empty(64, 32, 5, 5)
        >>> torch_default(w, generator=torch.Generator().manual_seed(0))
        >>> bool(w.abs().max() <= 1 / math.sqrt(800))
        True
    """
    kaiming_uniform(weight, generator=generator, a=math.sqrt(5.0), mode="fan_in")


# =============================================================================================
# Model-level (data-dependent) initializers
# =============================================================================================

_LSUV_TOL = 0.1      # Tol_var of Mishkin & Matas (2015), Algorithm 1
_LSUV_MAX_ITER = 10  # T_max of Mishkin & Matas (2015)


@MODEL_INITIALIZERS.register("lsuv")
def lsuv(
    model: nn.Module,
    *,
    generator: torch.Generator,
    data: Optional[Tensor] = None,
    activation: str = "relu",
    tol: float = _LSUV_TOL,
    max_iter: int = _LSUV_MAX_ITER,
) -> Dict[str, Any]:
    r"""Layer-sequential unit-variance init: orthonormal start, then rescale each layer to unit output variance.

    Paper: Mishkin & Matas (2015), "All you need is a good init" (Algorithm 1).

    1. Every Conv/Linear weight :math:`W_L` (see :func:`init_layers`) gets :func:`orthogonal` with gain 1.
    2. For each layer :math:`L` in definition order, with :math:`B_L` its output on ``data``:

    .. math::
        \textbf{while } |\operatorname{Var}(B_L) - 1| \ge \text{tol} \textbf{ and } t < \text{max\_iter}:
        \quad W_L \leftarrow W_L / \sqrt{\operatorname{Var}(B_L)}

    Forwards run under ``no_grad`` in eval mode (no dropout noise, no BatchNorm running-stat
    updates), and the model's mode is restored afterwards. Biases keep whatever
    :func:`initialize` set (0 by default), so with zero bias one rescale is exact.

    Args:
        model: the model; called as ``model(data)``.
        generator: the source of all randomness (the orthogonal start).
        data: a batch of inputs (required).
        activation: unused (the rescaling replaces any gain).
        tol: the tolerance on :math:`|\operatorname{Var}(B_L) - 1|`.
        max_iter: the most rescales per layer.

    Returns:
        ``{"lsuv_iters": {layer: rescales used}, "lsuv_var": {layer: final output variance}}``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))
        >>> x = torch.randn(256, 20, generator=g)
        >>> info = initialize(net, "lsuv", generator=g, data=x)
        >>> all(abs(v - 1) < 0.1 for v in info["lsuv_var"].values())
        True
    """
    if data is None:
        raise ValueError("lsuv needs a data batch: initialize(model, 'lsuv', generator=g, data=x)")
    layers = list(init_layers(model))
    for _, m in layers:
        orthogonal(m.weight, generator=generator, gain=1.0)

    captured: Dict[str, Tensor] = {}

    def output_var(module: nn.Module, name: str) -> float:
        captured.clear()
        handle = module.register_forward_hook(lambda mod, inp, out: captured.__setitem__("out", out))
        try:
            model(data)
        finally:
            handle.remove()
        if "out" not in captured:
            raise RuntimeError(f"lsuv: layer {name!r} was not called by model(data)")
        return captured["out"].detach().float().var().item()

    iters: Dict[str, int] = {}
    variances: Dict[str, float] = {}
    was_training = model.training
    model.eval()  # deterministic forwards: no dropout (which would draw from the global RNG)
    try:
        with torch.no_grad():
            for name, m in layers:
                var = output_var(m, name)
                t = 0
                while abs(var - 1.0) >= tol and t < max_iter:
                    if not (math.isfinite(var) and var > 0):
                        raise RuntimeError(f"lsuv: layer {name!r} has output variance {var}; cannot rescale")
                    m.weight.div_(math.sqrt(var))
                    t += 1
                    var = output_var(m, name)
                iters[name], variances[name] = t, var
    finally:
        model.train(was_training)
    return {"lsuv_iters": iters, "lsuv_var": variances}


lsuv.formula = "orthogonal (gain 1), then per layer W /= sqrt(Var(output)) until |Var - 1| < tol"  # type: ignore[attr-defined]


# =============================================================================================
# Specs: "name:key=value,..."
# =============================================================================================

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")


def _parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.1"`` / ``"1e-3"`` -> float, anything else -> the string."""
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


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
    if not isinstance(spec, str):
        raise ValueError(f"init spec must be a string like 'kaiming:mode=fan_out'; got {spec!r}")
    head, sep, tail = spec.strip().partition(":")
    name = head.strip()
    if not _NAME_RE.match(name):
        raise ValueError(f"bad init spec {spec!r}: expected 'name' or 'name:key=value,...'")
    _lookup(name)  # unknown name -> UnknownNameError listing the valid ones
    valid = init_params(name)
    valid_txt = ", ".join(valid) or "none"
    params: Dict[str, Any] = {}
    if sep and tail.strip():
        for item in tail.split(","):
            key, eq, value = (s.strip() for s in item.partition("="))
            if not eq or not _NAME_RE.match(key) or not value:
                raise ValueError(f"bad init spec {spec!r}: {item.strip()!r} is not key=value")
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r} for initializer {name!r}; valid: {valid_txt}")
            if key in params:
                raise ValueError(f"bad init spec {spec!r}: parameter {key!r} given twice")
            params[key] = _parse_value(value)
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
    bias: Optional[float] = None,
    data: Optional[Tensor] = None,
) -> Dict[str, Any]:
    """Initialize every Linear/ConvNd of ``model`` in place from ``spec``, all randomness from ``generator``.

    Layers are visited in definition order (:func:`init_layers`); for each, the weight is
    drawn, then its bias. Biases are set to the constant ``bias``; ``bias=None`` (default)
    means the method's own default: 0 for every method except ``torch_default``, which draws
    them PyTorch's way (its ``bias_init`` hook). Model-level initializers (``lsuv``) get the
    biases set first, then the whole model and ``data``.

    Args:
        model: the model to initialize in place.
        spec: ``"name"`` or ``"name:key=value,..."`` (see :func:`parse_spec`).
        generator: the source of all randomness (on the parameters' device).
        activation: the network's nonlinearity, for initializers that read a gain from it.
        bias: a constant for every bias; ``None`` = the method's default (see above).
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
    const_bias = 0.0 if bias is None else float(bias)
    info: Dict[str, Any] = {
        "init": format_spec(name, params),
        "name": name,
        "params": params,
        "layers": [n for n, _ in layers],
        "bias": name if bias_hook is not None else const_bias,
    }
    with torch.no_grad():
        for _, m in layers:
            if not model_level:
                fn(m.weight, generator=generator, activation=activation, **params)
            if m.bias is not None:
                if bias_hook is not None:
                    bias_hook(m.bias, m.weight, generator=generator)
                else:
                    m.bias.fill_(const_bias)
    if model_level:
        info.update(fn(model, generator=generator, activation=activation, data=data, **params))
    return info
