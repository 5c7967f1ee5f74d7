"""Deterministic initializers that break no symmetry by chance: a constant, and ZerO's zeros and ones.

``constant`` keeps every unit of a layer identical (the symmetry the lab's all-zero run shows, at a
nonzero value); ``zero_one`` (ZerO) breaks it by structure instead of randomness.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from initlab.init.spec import FINITE, register_init


@register_init("constant", formula="c (every weight)", limits={"value": FINITE})
def constant(weight: Tensor, *, generator: torch.Generator, activation: str = "relu",
             value: float = 0.01) -> None:
    r"""Fill ``weight`` with one constant ``value``.

    Every unit of a layer then computes the same function, receives the same gradient and stays the
    same: a layer with the capacity of one unit.

    Paper: none; the symmetry argument is Rumelhart, Hinton & Williams (1986).

    .. math::
        W_{ij} = c

    Args:
        weight: the tensor to fill in place.
        generator: unused (no randomness).
        activation: unused.
        value: the constant c (finite).

    Example:
        >>> w = torch.empty(2, 3)
        >>> constant(w, generator=torch.Generator(), value=0.5)
        >>> w.unique().tolist()
        [0.5]
    """
    weight.fill_(value)


def hadamard(p: int) -> Tensor:
    """The Sylvester Hadamard matrix of order ``p`` (a power of 2): entries +-1, ``H H^T = p I``;
    ``H[i, j] = (-1)^popcount(i & j)``."""
    if p < 1 or p & (p - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of 2, got {p}")
    idx = torch.arange(p)
    bits = torch.bitwise_and(idx[:, None], idx[None, :])
    parity = torch.zeros_like(bits)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return 1.0 - 2.0 * parity.to(torch.float32)


def zero_one_matrix(m: int, n: int) -> Tensor:
    r"""ZerO's (m out, n in) matrix (Zhao, Schäfer & Anandkumar 2022, Algorithm 1): the partial
    identity when the layer keeps or narrows the width, else a scaled Hadamard block."""
    if m <= n:
        return torch.eye(m, n)
    k = math.ceil(math.log2(m))
    p = 2 ** k
    return hadamard(p)[:m, :n] / 2 ** (k / 2)


@register_init("zero_one", formula="ZerO: partial identity (out <= in), else I H_p I / 2^(k/2), p = 2^k >= out; "
               "3x3 conv: at the kernel's centre")
def zero_one(weight: Tensor, *, generator: torch.Generator, activation: str = "relu") -> None:
    r"""ZerO: fill ``weight`` with zeros and ones (and a scaled Hadamard block), deterministically.

    Paper: Zhao, Schäfer & Anandkumar (2022), "ZerO Initialization: Initializing Neural Networks with
    only Zeros and Ones", TMLR; Algorithm 1 (dense) and 2 (convolution).

    For a weight of ``m`` outputs and ``n`` inputs:

    .. math::
        W = I_{m \times n} \ (m \le n), \qquad
        W = I_{m \times p}\, H_p\, I_{p \times n} \,/\, 2^{k/2} \ (m > n), \quad p = 2^k, k = \lceil\log_2 m\rceil

    with :math:`I_{a \times b}` the partial identity and :math:`H_p` the Sylvester Hadamard matrix
    (entries :math:`\pm 1`): a narrowing or square layer passes its first ``m`` inputs through; a
    widening one spreads every input over all outputs with Hadamard sign patterns (orthonormal columns
    when ``m`` is a power of 2; rows repeat with period :math:`2^{\lceil\log_2 n\rceil}`, and the next
    layer's different outgoing weights tell such twins apart). A convolution gets that matrix at the
    centre of its kernel and zeros elsewhere.
    Nothing is random: every seed gives the same network.

    Args:
        weight: the tensor to fill in place, (out, in) or (out, in, kh, kw).
        generator: unused (no randomness).
        activation: unused.

    Example:
        >>> w = torch.empty(4, 2)
        >>> zero_one(w, generator=torch.Generator())
        >>> (w.T @ w).tolist()     # a widening layer: orthonormal columns
        [[1.0, 0.0], [0.0, 1.0]]
    """
    m, n = weight.shape[0], weight.shape[1]
    matrix = zero_one_matrix(m, n).to(weight.dtype)
    if weight.dim() == 2:
        weight.copy_(matrix)
    else:
        weight.zero_()
        centre = tuple(s // 2 for s in weight.shape[2:])
        weight[(slice(None), slice(None)) + centre] = matrix
