"""Fans, the gain table and the one variance-scaling core that Glorot, He and LeCun specialize.

``fans`` and ``calculate_gain`` are the only sources of fans and gains in initlab;
``variance_scaling`` (registered as an initializer) is the core the named schemes call.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from initlab.init.spec import NON_NEGATIVE, Limit, register_init
from initlab.registry import UnknownNameError

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
# The core as an initializer
# =============================================================================================


@register_init("variance_scaling", formula="zero mean, variance scale/n, n = fan_in | fan_out | fan_avg",
               limits={"scale": NON_NEGATIVE, "mode": Limit(choices=("fan_in", "fan_out", "fan_avg")),
                       "distribution": Limit(choices=("normal", "uniform", "truncated_normal"))})
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
