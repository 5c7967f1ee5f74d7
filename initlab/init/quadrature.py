"""Gaussian expectations of an activation over pre-activations of length q: the integrals of the mean-field maps.

:mod:`initlab.init.mean_field` asks for two kinds of expectation, over one pre-activation
``u ~ N(0, q)`` (:func:`expect`: the length map, chi_1, chi_q) and over a pair of them of length q
and correlation c (:func:`expect_pair`: the correlation map, chi_c). Both are Gauss-Hermite
quadrature (``NODES`` nodes; a product rule in 2-D), except for long pre-activations, where a 1-D
expectation switches to a dense grid and a 2-D one refuses (``Q_WIDE``). ``phi`` is taken in float64
and its derivative ``phi'`` comes from autograd (:func:`derivative`).

``activation`` is a name from ``initlab.activations.ACTIVATIONS``, an ``Activation``, or any
callable on a float64 torch tensor (``lambda x: x`` for a linear net): :func:`activation_fn` reads it.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from torch import Tensor

from initlab.activations import ACTIVATIONS, Activation

ActivationLike = Union[str, Activation, Callable[[Tensor], Tensor]]

# Gauss-Hermite nodes for E over z ~ N(0, 1). An even count, so no node sits on the kink at 0 of
# ReLU-like activations, where phi' is undefined (autograd says 0): with 101 nodes the centre node
# carries weight 0.124 and E[relu'(z)^2] comes out 0.438 instead of 0.5 (critical ReLU
# sigma_w^2 = 2.28, not 2); with 100 the symmetric nodes give exactly 0.5, and E[relu(z)^2],
# E[z relu(z) relu'(z)] exactly 1/2 too. Smooth activations (tanh) are exact to ~1e-12 at 100
# nodes. Other integrands with a kink converge more slowly: E[relu(z)] = 0.4006 (exact
# 1/sqrt(2 pi) = 0.3989), and the 2-D product rule for ReLU correlations at c < 1 is off by
# ~1e-3 (tests/test_mean_field.py checks both against closed forms).
NODES = 100
_Z, _W = hermegauss(NODES)
_W = _W / _W.sum()                                    # probability weights: sum 1


def activation_fn(activation: ActivationLike) -> Callable[[Tensor], Tensor]:
    """The function on float64 tensors behind a registered name, an ``Activation`` or a callable."""
    if isinstance(activation, str):
        return ACTIVATIONS.get(activation).fn
    if isinstance(activation, Activation):
        return activation.fn
    if callable(activation):
        return activation
    raise TypeError(f"activation must be a registered name, an Activation or a callable; got {activation!r}")


def derivative(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """phi'(x) elementwise by autograd (0 where phi does not depend on x)."""
    x = x.detach().requires_grad_(True)
    y = fn(x)
    if not y.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return grad.detach()


def phi(fn: Callable[[Tensor], Tensor], x: np.ndarray) -> np.ndarray:
    """phi(x) elementwise, in float64, on a numpy array."""
    return fn(torch.as_tensor(x, dtype=torch.float64)).detach().numpy()


def dphi(fn: Callable[[Tensor], Tensor], x: np.ndarray) -> np.ndarray:
    """phi'(x) elementwise, in float64, on a numpy array (by :func:`derivative`)."""
    return derivative(fn, torch.as_tensor(x, dtype=torch.float64)).numpy()


# Above Q_WIDE the pre-activations are so long that phi' (width ~1 in h) is narrower than the gaps between
# Gauss-Hermite nodes scaled by sqrt(q) (tanh at sigma_w^2 = 30: chi_1 2.37 with 100 nodes, 3.15 exact):
# 1-D expectations then use a dense trapezoid grid in h itself (spacing H_STEP over +-H_SPAN sqrt(q));
# the 2-D ones (correlations) refuse, with ValueError, beyond Q_2D.
Q_WIDE = 4.0
Q_2D = 10.0
H_STEP = 0.01
H_SPAN = 9.0
H_POINTS = 200_000   # at most: spacing 0.01 up to q ~ 1.2e5
Q_DENSE = 1e5


def expect(g: Callable[[np.ndarray], np.ndarray], q: float) -> float:
    """E[g(u)] for u ~ N(0, q): Gauss-Hermite up to Q_WIDE and beyond Q_DENSE, a dense grid in u between
    (see Q_WIDE). Beyond Q_DENSE (q* = inf is evaluated at ``mean_field.Q_MAX``) only scale-free maps
    (ReLU-like) keep a meaning, and Gauss-Hermite gets them exactly.

    Example:
        >>> round(expect(lambda u: u ** 2, 2.0), 12)   # E[u^2] = q
        2.0
    """
    if q <= Q_WIDE or q > Q_DENSE:
        return float(_W @ g(math.sqrt(q) * _Z))
    half = H_SPAN * math.sqrt(q)
    n = min(int(2 * half / H_STEP), H_POINTS)
    u = np.linspace(-half, half, n + n % 2)            # an even count: no point on a kink at 0
    w = np.exp(-u * u / (2 * q))
    w /= w.sum()
    return float(w @ g(u))


def expect_pair(g: Callable[[np.ndarray], np.ndarray], c: float, q: float) -> float:
    """E[g(u1) g(u2)] by the 2-D product rule, for two pre-activations of length q and correlation c.

    u1 = sqrt(q) z1 and u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2), z1, z2 independent N(0, 1).
    ``ValueError`` beyond q = ``Q_2D`` (see ``Q_WIDE``).

    Example:
        >>> round(expect_pair(lambda u: u, 0.5, 2.0), 12)   # E[u1 u2] = c q
        1.0
    """
    if q > Q_2D:
        raise ValueError(f"q = {q:.3g}: pre-activations too long for the 2-D quadrature of correlations "
                         f"(resolved up to q = {Q_2D:g})")
    g1 = g(math.sqrt(q) * _Z)                                                                 # (z1,)
    u2 = math.sqrt(q) * (c * _Z[:, None] + math.sqrt(max(0.0, 1.0 - c * c)) * _Z[None, :])  # (z1, z2)
    return float(_W @ (g1[:, None] * g(u2)) @ _W)
