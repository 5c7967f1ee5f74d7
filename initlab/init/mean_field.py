"""Mean-field signal propagation: where (sigma_w^2, sigma_b^2) puts a deep net, ordered, critical or chaotic.

Setting (Poole et al. 2016; Schoenholz et al. 2017): a deep fully connected net of width N,
``h^l = W^l phi(h^{l-1}) + b^l`` with ``W_ij ~ N(0, sigma_w^2 / N)`` and ``b_i ~ N(0, sigma_b^2)``.
For large N each pre-activation is Gaussian, and two numbers per layer describe a signal:

- its length ``q^l`` (the variance of ``h_i^l``), carried by the *length map* to a fixed point ``q*``;
- the correlation ``c^l`` of two inputs' pre-activations, carried by the *correlation map* to ``c*``.

``chi_1`` (the slope of the correlation map at ``c = 1``, also the per-layer growth of squared
gradients) splits the plane: ordered (``chi_1 < 1``: inputs collapse onto one another, gradients
vanish), chaotic (``chi_1 > 1``: nearby inputs decorrelate, gradients explode), critical on the
line ``chi_1 = 1`` between them, where signals travel deepest (the depth scale ``xi_c`` diverges).
Pennington et al. 2017 then ask for more than ``chi_1 = 1``: that the whole singular-value
spectrum of the input-output Jacobian stays near 1 (dynamical isometry); that, and the sigma_w^2
each classic init draws, are in :mod:`initlab.init.mean_field_inits`.

``activation`` is a name from ``initlab.activations.ACTIVATIONS``, an ``Activation``, or any
callable on a float64 torch tensor (``lambda x: x`` for a linear net). Every Gaussian expectation
is Gauss-Hermite quadrature (a product rule in 2-D) and ``phi'`` comes from autograd, both in
:mod:`initlab.init.quadrature`. Only :func:`critical_sigma_w2` uses scipy (``scipy.optimize.brentq``),
imported there.

Papers: Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli (2016), "Exponential expressivity in deep
neural networks through transient chaos"; Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017),
"Deep Information Propagation".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Sequence

from initlab.init.quadrature import ActivationLike, activation_fn, dphi, expect, expect_pair, phi

# =============================================================================================
# Fixed-point tolerances and the range of q
# =============================================================================================

TOL = 1e-13          # relative step at which a fixed-point iteration has converged
ITERATIONS = 100     # plain iterations (tens suffice off the critical line) before bracket + bisection
# A length fixed point beyond Q_MAX (pre-activation std 1e5) is reported as inf: for a map of slope
# ~1 (ReLU at sigma_w^2 = 2, q' = q + sigma_b^2), float64 rounding of q' (~1e-16 q) could invent a
# fixed point near 1e15. Slopes at q* = inf (or 0) are taken at Q_MAX (or Q_MIN), their limits.
Q_MAX = 1e10
Q_MIN = 1e-20


def _finite_q(q: float) -> float:
    """q clipped to [Q_MIN, Q_MAX]: where slopes at q* = 0 or inf are evaluated (their limits)."""
    return min(max(q, Q_MIN), Q_MAX)


# =============================================================================================
# The two maps and their fixed points
# =============================================================================================


def length_map(q: float, sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""One layer's map of the pre-activation length (variance) q.

    Paper: Poole et al. (2016), eq. 3; Schoenholz et al. (2017), eq. 3.

    .. math::
        q^{l} = \sigma_w^2 \, \mathbb{E}_{z \sim \mathcal{N}(0,1)}\big[\phi(\sqrt{q^{l-1}}\, z)^2\big] + \sigma_b^2

    Args:
        q: the length q^{l-1} (finite, >= 0).
        sigma_w2: weight variance times fan-in, ``N Var(W_ij)``.
        sigma_b2: bias variance.
        activation: a registered name, an ``Activation`` or a callable on torch tensors.

    Example:
        >>> round(length_map(1.0, 2.0, 0.1, "relu"), 12)   # 2 E[relu(z)^2] + 0.1 = 2 * 1/2 + 0.1
        1.1
    """
    fn = activation_fn(activation)
    return sigma_w2 * expect(lambda u: phi(fn, u) ** 2, q) + sigma_b2


def correlation_map(c: float, q: float, sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""One layer's map of the correlation c of two inputs whose pre-activations both have length q.

    Paper: Poole et al. (2016), eq. 5; Schoenholz et al. (2017), eq. 4.

    .. math::
        c^{l} = \frac{\sigma_w^2\, \mathbb{E}[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q^{l}}, \quad
        u_1 = \sqrt{q}\, z_1, \ u_2 = \sqrt{q}\,\big(c z_1 + \sqrt{1 - c^2}\, z_2\big)

    with :math:`q^{l}` = :func:`length_map` of q (= q* at the fixed point, as in the papers).

    Args:
        c: the correlation c^{l-1}, in [-1, 1].
        q: the length of both inputs' pre-activations (usually q* from :func:`fixed_point_q`).
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> correlation_map(1.0, 0.5, 1.5, 0.05, "tanh")   # c = 1 is always a fixed point
        1.0
        >>> round(correlation_map(0.0, 1.0, 2.0, 0.0, "relu"), 2)   # 2 E[relu(z1)] E[relu(z2)] = 1/pi
        0.32
    """
    fn = activation_fn(activation)
    return _correlation_map(c, q, sigma_w2, sigma_b2, fn)


def _correlation_map(c: float, q: float, sigma_w2: float, sigma_b2: float, fn: Callable) -> float:
    joint = expect_pair(lambda u: phi(fn, u), c, q)
    return _clip_unit((sigma_w2 * joint + sigma_b2) / length_map(q, sigma_w2, sigma_b2, fn))


def _clip_unit(c: float) -> float:
    """c clipped to [-1, 1] (rounding can put a correlation a few ulps outside)."""
    return min(1.0, max(-1.0, c))


def _iterate(f: Callable[[float], float], x: float, lo: float, hi: float) -> float:
    """The fixed point of the increasing map ``f`` that iterating from ``x`` reaches, in [lo, hi].

    Both maps are increasing, so the iterates move monotonically toward the first fixed point
    ahead of them (or run into ``lo`` / ``hi``, which is then returned). Plain iteration converges
    at the rate f'(x*); near the critical line that rate is ~1, so after ``ITERATIONS`` steps the
    rest of the way is bracketed (halving the distance to the edge ahead) and bisected.
    """
    for _ in range(ITERATIONS):
        fx = f(x)
        if abs(fx - x) <= TOL * max(1.0, abs(x)):
            return fx
        if not lo < fx < hi:
            return lo if fx <= lo else hi
        x = fx
    gap = lambda y: f(y) - y
    direction = gap(x) > 0
    edge = hi if direction else lo
    near, far = x, (x + edge) / 2.0
    while (gap_far := gap(far)) != 0 and (gap_far > 0) == direction:
        if abs(far - edge) <= TOL * max(1.0, abs(edge)):
            return edge                                 # no fixed point before the edge
        near, far = far, (far + edge) / 2.0
    return _bisect(gap, near, far)


def _bisect(f: Callable[[float], float], a: float, b: float) -> float:
    """A root of f between a and b, where f changes sign, to TOL (relative) by bisection."""
    fa = f(a)
    while abs(b - a) > TOL * max(1.0, abs(a)):
        m = (a + b) / 2.0
        fm = f(m)
        if fm == 0:
            return m
        a, b, fa = (m, b, fm) if (fm > 0) == (fa > 0) else (a, m, fa)
    return (a + b) / 2.0


def fixed_point_q(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""q*: the length that the length map settles at, iterating from q = 1.

    Paper: Poole et al. (2016), section 2; Schoenholz et al. (2017), section 2.

    .. math::
        q^* = \sigma_w^2\, \mathbb{E}_z\big[\phi(\sqrt{q^*} z)^2\big] + \sigma_b^2

    Returns ``inf`` when the iterates grow without bound (past ``Q_MAX`` = 1e10): a ReLU has
    :math:`q^{l} = \tfrac{\sigma_w^2}{2} q^{l-1} + \sigma_b^2`, so for :math:`\sigma_w^2 > 2`, or
    :math:`\sigma_w^2 = 2` with :math:`\sigma_b^2 > 0` (He's scale with biases), there is no finite
    fixed point; bounded activations (tanh, sigmoid) always have one. For a ReLU at
    :math:`\sigma_w^2 = 2, \sigma_b^2 = 0` every q is fixed and the start, 1, is returned; below it, 0.

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> round(fixed_point_q(1.0, 0.1, "relu"), 12)   # q* = sigma_b^2 / (1 - sigma_w^2 / 2)
        0.2
        >>> fixed_point_q(2.0, 0.1, "relu")
        inf
    """
    fn = activation_fn(activation)
    q = _iterate(lambda q: length_map(q, sigma_w2, sigma_b2, fn), 1.0, 0.0, Q_MAX)
    return math.inf if q >= Q_MAX else q


def fixed_point_c(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""c*: the correlation that the correlation map (at q*) settles at, iterating from c = 0.5.

    Paper: Poole et al. (2016), section 3; Schoenholz et al. (2017), section 2.

    .. math::
        c^* = \frac{\sigma_w^2\, \mathbb{E}[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q^*}, \quad
        u_1 = \sqrt{q^*} z_1,\ u_2 = \sqrt{q^*}\big(c^* z_1 + \sqrt{1 - c^{*2}} z_2\big)

    c = 1 is always a fixed point; it is the one reached in the ordered phase (all inputs end up
    alike) and at the critical line, and a c* < 1 is reached in the chaotic phase (c* = 0 for an
    odd phi with sigma_b^2 = 0). When q* = inf the map is taken at ``Q_MAX``, its limit.

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> fixed_point_c(1.0, 0.05, "tanh")       # ordered
        1.0
        >>> round(fixed_point_c(4.0, 0.05, "tanh"), 3)   # chaotic
        0.165
    """
    fn = activation_fn(activation)
    return _c_star(_finite_q(fixed_point_q(sigma_w2, sigma_b2, fn)), sigma_w2, sigma_b2, fn)


def _c_star(q: float, sigma_w2: float, sigma_b2: float, fn: Callable) -> float:
    # The correlation map is increasing and convex on [0, 1] (Price's theorem: its second derivative
    # is sigma_w^2 q^2 E[phi''(u1) phi''(u2)] / q' >= 0), so with slope chi_1 <= 1 at c = 1 it stays
    # above the diagonal: iterates from 0.5 rise to 1, and no other fixed point is in the way. Taking
    # c* = 1 there is exact, where iterating is slow at criticality (1 - c^l ~ 1/l) and the 2-D rule
    # cannot resolve the last 1e-4 of a ReLU's approach. The 1e-9 admits the root critical_sigma_w2 finds.
    if _chi_1(q, sigma_w2, fn) <= 1.0 + 1e-9:
        return 1.0
    return _iterate(lambda c: _correlation_map(c, q, sigma_w2, sigma_b2, fn), 0.5, -1.0, 1.0)


# =============================================================================================
# Slopes at the fixed points and depth scales
# =============================================================================================


def chi_1(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""chi_1: the slope of the correlation map at c = 1, and the per-layer growth of squared gradients.

    Paper: Poole et al. (2016), eq. 7; Schoenholz et al. (2017), eq. 8 (and section 4, gradients).

    .. math::
        \chi_1 = \sigma_w^2\, \mathbb{E}_z\big[\phi'(\sqrt{q^*} z)^2\big]

    < 1 ordered, = 1 critical, > 1 chaotic. At q* = inf (or 0) it is the limit, taken at ``Q_MAX``
    (or ``Q_MIN``): for a ReLU :math:`\chi_1 = \sigma_w^2 / 2` whatever q*.

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> round(chi_1(2.0, 0.0, "relu"), 12)     # He et al.'s scale is critical
        1.0
    """
    fn = activation_fn(activation)
    return _chi_1(fixed_point_q(sigma_w2, sigma_b2, fn), sigma_w2, fn)


def _chi_1(q: float, sigma_w2: float, fn: Callable) -> float:
    return sigma_w2 * expect(lambda u: dphi(fn, u) ** 2, _finite_q(q))


def chi_q(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""chi_q: the slope of the length map at q*, how fast lengths approach q*.

    Paper: Schoenholz et al. (2017), eq. 5.

    .. math::
        \chi_q = \sigma_w^2\, \mathbb{E}_z\big[\phi'(\sqrt{q^*} z)^2 + \phi''(\sqrt{q^*} z)\,\phi(\sqrt{q^*} z)\big]
               = \frac{\sigma_w^2}{\sqrt{q^*}}\, \mathbb{E}_z\big[z\, \phi(\sqrt{q^*} z)\, \phi'(\sqrt{q^*} z)\big]
               = \frac{d q^{l}}{d q^{l-1}}\Big|_{q^*}

    computed in the second form (Stein's lemma, :math:`\mathbb{E}[z f(z)] = \mathbb{E}[f'(z)]`),
    which needs only phi', so it holds for ReLU (where phi'' is a delta) too.

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> round(chi_q(1.0, 0.1, "relu"), 12)     # the length map's slope, sigma_w^2 / 2
        0.5
    """
    fn = activation_fn(activation)
    return _chi_q(fixed_point_q(sigma_w2, sigma_b2, fn), sigma_w2, fn)


def _chi_q(q: float, sigma_w2: float, fn: Callable) -> float:
    q = _finite_q(q)
    # E[z phi(u) phi'(u)] with z = u / sqrt(q)
    return sigma_w2 * expect(lambda u: u * phi(fn, u) * dphi(fn, u), q) / q


def chi_c(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> float:
    r"""chi_c: the slope of the correlation map at c*, how fast correlations approach c*.

    Paper: Schoenholz et al. (2017), eq. 8 (Price's theorem,
    :math:`\partial_c \mathbb{E}[\phi(u_1)\phi(u_2)] = q\, \mathbb{E}[\phi'(u_1)\phi'(u_2)]`).

    .. math::
        \chi_c = \frac{\partial c^{l}}{\partial c^{l-1}}\Big|_{c^*}
               = \sigma_w^2\, \mathbb{E}\big[\phi'(u_1)\,\phi'(u_2)\big], \quad
        u_1 = \sqrt{q^*} z_1,\ u_2 = \sqrt{q^*}\big(c^* z_1 + \sqrt{1 - c^{*2}} z_2\big)

    At c* = 1 this is :math:`\chi_1`. (Computed as :math:`\sigma_w^2 q\, \mathbb{E}[\phi'\phi'] / q^{l}`,
    which is the same at q* and the right limit where q* = inf.)

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> round(chi_c(4.0, 0.05, "tanh"), 3)     # chaotic: c* < 1 is stable
        0.867
    """
    fn = activation_fn(activation)
    q = _finite_q(fixed_point_q(sigma_w2, sigma_b2, fn))
    return _chi_c(_c_star(q, sigma_w2, sigma_b2, fn), q, sigma_w2, sigma_b2, fn)


def _chi_c(c: float, q: float, sigma_w2: float, sigma_b2: float, fn: Callable) -> float:
    joint = expect_pair(lambda u: dphi(fn, u), c, q)
    return sigma_w2 * q * joint / length_map(q, sigma_w2, sigma_b2, fn)


def depth_scale(chi: float) -> float:
    r"""xi = -1 / ln(chi): the number of layers over which a deviation from a fixed point shrinks by e.

    Paper: Schoenholz et al. (2017), eqs. 6 and 9 (:math:`|q^l - q^*| \sim e^{-l/\xi_q}`,
    :math:`|c^l - c^*| \sim e^{-l/\xi_c}`).

    .. math::
        \xi = -\frac{1}{\ln \chi}

    ``inf`` for chi >= 1 (the fixed point is not approached exponentially: it is marginal, or the
    signal runs away), 0 for chi <= 0.

    Example:
        >>> round(depth_scale(math.exp(-0.1)), 6)
        10.0
        >>> depth_scale(1.0)
        inf
    """
    if chi >= 1.0:
        return math.inf
    if chi <= 0.0:
        return 0.0
    return -1.0 / math.log(chi)


@dataclass(frozen=True)
class MeanField:
    """The mean-field picture of one (sigma_w^2, sigma_b^2, activation); see :func:`analyze`."""

    q_star: float   # fixed-point length of the pre-activations (inf: they grow without bound)
    c_star: float   # fixed-point correlation of two inputs
    chi_1: float    # slope of the correlation map at c = 1; gradient growth per layer
    xi_q: float     # layers over which lengths settle: -1/ln chi_q
    xi_c: float     # layers over which correlations settle: -1/ln chi_c (inf at criticality)


def analyze(sigma_w2: float, sigma_b2: float, activation: ActivationLike) -> MeanField:
    r"""q*, c*, chi_1 and the depth scales xi_q, xi_c of one point of the (sigma_w^2, sigma_b^2) plane.

    Paper: Schoenholz et al. (2017), section 2 (formulas in :func:`fixed_point_q`,
    :func:`fixed_point_c`, :func:`chi_1`, :func:`chi_q`, :func:`chi_c`, :func:`depth_scale`).

    .. math::
        \xi_q = -1/\ln \chi_q, \qquad \xi_c = -1/\ln \chi_c

    Args:
        sigma_w2, sigma_b2, activation: as in :func:`length_map`.

    Example:
        >>> mf = analyze(1.3, 0.05, "tanh")
        >>> round(mf.q_star, 4), mf.c_star, round(mf.xi_c, 2)
        (0.3153, 1.0, 7.83)
    """
    fn = activation_fn(activation)
    q = fixed_point_q(sigma_w2, sigma_b2, fn)
    qf = _finite_q(q)
    c = _c_star(qf, sigma_w2, sigma_b2, fn)
    return MeanField(q_star=q, c_star=c, chi_1=_chi_1(q, sigma_w2, fn),
                     xi_q=depth_scale(_chi_q(q, sigma_w2, fn)),
                     xi_c=depth_scale(_chi_c(c, qf, sigma_w2, sigma_b2, fn)))


# =============================================================================================
# The critical line and the phases
# =============================================================================================


def critical_sigma_w2(sigma_b2: float, activation: ActivationLike) -> float:
    r"""The sigma_w^2 on the critical line for this sigma_b^2: the root of chi_1 = 1.

    Paper: Poole et al. (2016), Fig. 3; Schoenholz et al. (2017), Fig. 1 (the order-to-chaos line).

    .. math::
        \sigma_w^2\, \mathbb{E}_z\big[\phi'(\sqrt{q^*}\, z)^2\big] = 1, \qquad q^* = q^*(\sigma_w^2, \sigma_b^2)

    Brent's method (``scipy.optimize.brentq``) on [0.01, hi], hi doubled from 1 until chi_1(hi) > 1
    (up to 2^20; ``ValueError`` if chi_1 never reaches 1). ReLU: 2 for every sigma_b^2 (He et al.
    2015's scale); tanh at sigma_b^2 = 0.05: 1.761 (Poole et al. report 1.76).

    Args:
        sigma_b2: bias variance.
        activation: as in :func:`length_map`.

    Example:
        >>> critical_sigma_w2(0.0, "relu")
        2.0
        >>> round(critical_sigma_w2(0.05, "tanh"), 3)
        1.761
    """
    from scipy.optimize import brentq  # (scipy: only here)

    fn = activation_fn(activation)
    excess = lambda sigma_w2: chi_1(sigma_w2, sigma_b2, fn) - 1.0
    lo, hi = 0.01, 1.0
    if excess(lo) >= 0:
        raise ValueError(f"chi_1 >= 1 already at sigma_w^2 = {lo}: no ordered phase to bracket from")
    while excess(hi) < 0:
        lo, hi = hi, 2.0 * hi
        if hi > 2.0**20:
            raise ValueError(f"chi_1 < 1 up to sigma_w^2 = 2^20 at sigma_b^2 = {sigma_b2}: no critical point")
    return brentq(excess, lo, hi, xtol=1e-12, rtol=1e-12)


def critical_line(sigma_b2s: Sequence[float], activation: ActivationLike) -> List[float]:
    r"""The critical sigma_w^2 for each sigma_b^2: the order-to-chaos phase boundary.

    Paper: Poole et al. (2016), Fig. 3; Schoenholz et al. (2017), Fig. 1.

    .. math::
        \{(\sigma_w^2, \sigma_b^2) : \chi_1 = 1\}, \text{ by :func:`critical_sigma_w2` per } \sigma_b^2

    Example:
        >>> [round(s, 3) for s in critical_line([0.0, 0.05], "tanh")]
        [1.0, 1.761]
    """
    return [critical_sigma_w2(b, activation) for b in sigma_b2s]



def phase(sigma_w2: float, sigma_b2: float, activation: ActivationLike, tol: float = 1e-3) -> str:
    r"""``"ordered"``, ``"critical"`` or ``"chaotic"``: chi_1 below, within ``tol`` of, or above 1.

    Paper: Poole et al. (2016), section 3; Schoenholz et al. (2017), section 2.

    .. math::
        \chi_1 < 1 - \text{tol}: \text{ordered}, \quad |\chi_1 - 1| \le \text{tol}: \text{critical},
        \quad \chi_1 > 1 + \text{tol}: \text{chaotic}

    Example:
        >>> phase(1.0, 0.05, "tanh"), phase(4.0, 0.05, "tanh"), phase(2.0, 0.0, "relu")
        ('ordered', 'chaotic', 'critical')
    """
    chi = chi_1(sigma_w2, sigma_b2, activation)
    return "ordered" if chi < 1.0 - tol else "chaotic" if chi > 1.0 + tol else "critical"

