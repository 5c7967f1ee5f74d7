"""Initializers in the mean-field picture: the sigma_w^2 each one draws, and its weights' Jacobian spectrum.

:mod:`initlab.init.mean_field` places a point (sigma_w^2, sigma_b^2) of the plane: ordered, critical or
chaotic; this module holds the initializers' side of it. :func:`init_sigma_w2` (by formula) and
:func:`measured_sigma_w2` (by one draw of any registered init) give the sigma_w^2 = N Var(W_ij) an
init puts on a square layer, which is its point on the sigma_w^2 axis. Beyond that point, the
distribution of the weights matters too: Pennington et al. 2017 ask that the whole singular-value
spectrum of the input-output Jacobian stay near 1 (dynamical isometry), which orthogonal weights reach
for tanh and Gaussian weights do not (:func:`jacobian_singular_values`).

Papers: LeCun et al. (1998); Glorot & Bengio (2010); He et al. (2015); Saxe et al. (2013); Pennington,
Schoenholz & Ganguli (2017), "Resurrecting the sigmoid in deep learning through dynamical isometry: theory
and practice".
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from initlab.activations import ACTIVATIONS, Activation
from initlab.init.mean_field import fixed_point_q
from initlab.init.quadrature import ActivationLike, activation_fn, derivative
from initlab.init.scaling import calculate_gain, variance_scaling
from initlab.init.schemes import orthogonal
from initlab.registry import UnknownNameError

# =============================================================================================
# Where the classic initializers stand
# =============================================================================================


def _gain(activation: ActivationLike) -> float:
    act = ACTIVATIONS.get(activation) if isinstance(activation, str) else activation
    if not isinstance(act, Activation):
        raise ValueError("this init's scale needs the activation's gain: pass a registered name or an Activation")
    return calculate_gain(act.gain_key, act.gain_param)


def init_sigma_w2(name: str, activation: ActivationLike) -> float:
    r"""The sigma_w^2 = N Var(W_ij) that a classic init gives a square (N x N) layer before ``activation``.

    Papers: Glorot & Bengio (2010); He et al. (2015); LeCun et al. (1998); Saxe et al. (2013).

    ================== ===================================================================
    name               sigma_w^2 (g = :func:`~initlab.init.scaling.calculate_gain` of the activation)
    ================== ===================================================================
    xavier, glorot     :math:`1` (:math:`2 / (\text{fan\_in} + \text{fan\_out}) \cdot N`, gain 1 as in initlab)
    kaiming, he        :math:`g^2` (2 for ReLU)
    lecun              :math:`1`
    orthogonal         :math:`g^2` (:math:`W = g Q`, initlab's default gain)
    ================== ===================================================================

    (initlab's registered ``kaiming`` keeps a = 0, i.e. sigma_w^2 = 2, whatever the activation;
    this is He's rule applied to the activation: the same for ReLU.)

    Example:
        >>> round(init_sigma_w2("kaiming", "relu"), 12), init_sigma_w2("xavier", "tanh")
        (2.0, 1.0)
    """
    if name in ("xavier", "glorot", "lecun"):
        return 1.0
    if name in ("kaiming", "he", "orthogonal"):
        return _gain(activation) ** 2
    raise UnknownNameError(f"unknown init {name!r}; choose from: xavier, glorot, kaiming, he, lecun, orthogonal")


# =============================================================================================
# The Jacobian at initialization (dynamical isometry)
# =============================================================================================

WEIGHTS = ("gaussian", "orthogonal")


def jacobian_singular_values(
    depth: int,
    width: int,
    sigma_w2: float,
    sigma_b2: float,
    activation: ActivationLike,
    weights: str = "gaussian",
    seed: int = 0,
) -> np.ndarray:
    r"""Singular values of the input-output Jacobian of a random ``depth``-layer net at q*.

    Paper: Pennington, Schoenholz & Ganguli (2017), eq. 2 (dynamical isometry: all singular
    values near 1, not just their mean square, :math:`\chi_1`).

    .. math::
        J = \frac{\partial x^L}{\partial x^0} = \prod_{l=L}^{1} D^l W^l, \quad
        D^l = \operatorname{diag}\big(\phi'(h^l)\big), \quad h^l = W^l x^{l-1} + b^l, \ x^l = \phi(h^l)

    with :math:`W^l \sim \mathcal{N}(0, \sigma_w^2/N)` (``gaussian``) or :math:`\sqrt{\sigma_w^2}\, Q`,
    Q Haar-orthogonal (``orthogonal``, QR with the sign fix), :math:`b^l \sim \mathcal{N}(0, \sigma_b^2)`,
    and one input :math:`x^0 = \phi(h^0)`, :math:`h^0 \sim \mathcal{N}(0, q^* I)`, so every
    layer's pre-activations sit at their fixed-point length. float64 throughout; all draws from a
    ``torch.Generator`` seeded with ``seed``. ``ValueError`` if q* is infinite.

    Args:
        depth: number of layers L.
        width: units per layer N.
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.
        weights: ``gaussian`` or ``orthogonal``.
        seed: seeds the generator of weights, biases and the input.

    Returns:
        the N singular values, largest first.

    Example:
        >>> s = jacobian_singular_values(8, 64, 1.0, 0.0, lambda x: x, weights="orthogonal")
        >>> bool(np.allclose(s, 1.0))
        True
    """
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; choose from: {', '.join(WEIGHTS)}")
    fn = activation_fn(activation)
    q = fixed_point_q(sigma_w2, sigma_b2, fn)
    if not math.isfinite(q):
        raise ValueError(f"q* is infinite at sigma_w^2 = {sigma_w2}, sigma_b^2 = {sigma_b2}: no fixed point to sit at")
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    h = math.sqrt(q) * torch.randn(width, generator=g, dtype=f64)      # (N,) h^0 at length q*
    jac = torch.eye(width, dtype=f64)                                   # (N, N) d x^0 / d x^0
    for _ in range(depth):
        w = torch.empty(width, width, dtype=f64)                       # (out, in)
        if weights == "gaussian":
            variance_scaling(w, generator=g, scale=sigma_w2, mode="fan_in", distribution="normal")
        else:
            orthogonal(w, generator=g, gain=math.sqrt(sigma_w2))
        b = math.sqrt(sigma_b2) * torch.randn(width, generator=g, dtype=f64)
        h = w @ fn(h) + b                                              # (N,) h^l
        jac = derivative(fn, h)[:, None] * (w @ jac)                  # D^l W^l J^{l-1}
    return torch.linalg.svdvals(jac).numpy()


def measured_sigma_w2(spec: str, activation: str, width: int = 256, seed: int = 0) -> Optional[float]:
    r"""The sigma_w^2 = N Var(W_ij) that init ``spec`` draws for a square ``width`` x ``width`` layer before
    ``activation`` (its second moment, measured on one draw), or None where the init needs data to draw
    (lsuv, dbn) or cannot draw a square layer.

    Example:
        >>> round(measured_sigma_w2("kaiming", "relu", width=512), 1)
        2.0
    """
    from initlab.init.spec import initialize  # (initlab.init's own entry point: imported where it is used)

    layer = torch.nn.Sequential(torch.nn.Linear(width, width))
    try:
        initialize(layer, spec, generator=torch.Generator().manual_seed(seed), activation=activation, bias=0.0)
    except (ValueError, RuntimeError, TypeError):
        return None
    return float(width * layer[0].weight.detach().double().pow(2).mean())
