"""The named per-weight initializers: zeros, fixed uniform / normal / truncated normal, Glorot, He,
LeCun, orthogonal and PyTorch's layer default; each registered in ``INITIALIZERS``.

Each fills ``weight`` in place from the generator it is given: ``fn(weight, *, generator,
activation="relu", **params) -> None``. The fan-based ones are small specializations of
:func:`~initlab.init.scaling.variance_scaling`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from initlab.init.scaling import _choose, _trunc_normal_, calculate_gain, fans, variance_scaling
from initlab.init.spec import FINITE, NON_NEGATIVE, POSITIVE, Limit, register_init

FAN_MODE = Limit(choices=("fan_in", "fan_out"))


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


@register_init("uniform", formula="U(low, high)", limits={"low": FINITE, "high": FINITE})
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


@register_init("normal", formula="N(mean, std^2)", limits={"mean": FINITE, "std": NON_NEGATIVE})
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


@register_init("truncated_normal", formula="N(mean, std^2) cut at mean +- 2 std (sample std 0.88 std)",
               limits={"mean": FINITE, "std": POSITIVE})
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


@register_init("xavier", formula="N(0, gain^2 * 2/(fan_in + fan_out))", limits={"gain": POSITIVE})
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


@register_init("xavier_uniform", formula="U(+-gain * sqrt(6/(fan_in + fan_out)))", limits={"gain": POSITIVE})
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


@register_init("kaiming", formula="N(0, 2/((1 + a^2) * fan)), fan = fan_in | fan_out",
               limits={"a": NON_NEGATIVE, "mode": FAN_MODE})
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


@register_init("kaiming_uniform", formula="U(+-sqrt(6/((1 + a^2) * fan))), fan = fan_in | fan_out",
               limits={"a": NON_NEGATIVE, "mode": FAN_MODE})
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


@register_init("orthogonal",
               formula="gain * Q, Q Haar-random (semi-)orthogonal (out, in*k); gain None = calculate_gain(activation)",
               limits={"gain": Limit(0, open=True, optional=True)})
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
