"""Tests for initlab.init.mean_field and mean_field_inits: closed forms, the papers' numbers, the Jacobian's spectrum.

Oracles, not read back from the module: ReLU and linear nets have closed-form length maps
(q' = sigma_w^2 q / 2 + sigma_b^2 and sigma_w^2 q + sigma_b^2) and ReLU's correlation map is the
arc-cosine kernel (Cho & Saul 2009); tanh's critical point and depth scales are those of Poole et
al. (2016) and Schoenholz et al. (2017, Fig. 2) at sigma_b^2 = 0.05; the slopes chi_q and chi_c
are checked against finite differences of the maps they are the derivatives of.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from initlab.activations import ACTIVATIONS
from initlab.init.mean_field import (
    analyze,
    chi_1,
    chi_c,
    chi_q,
    correlation_map,
    critical_line,
    critical_sigma_w2,
    depth_scale,
    fixed_point_c,
    fixed_point_q,
    length_map,
    phase,
)
from initlab.init.mean_field_inits import init_sigma_w2, jacobian_singular_values
from initlab.registry import UnknownNameError


def linear(x):
    return x


# ---------------------------------------------------------------------------------------------
# Closed forms: ReLU and linear nets
# ---------------------------------------------------------------------------------------------


def test_relu_is_critical_at_kaimings_scale():
    assert chi_1(2.0, 0.0, "relu") == pytest.approx(1.0, abs=1e-12)
    assert critical_sigma_w2(0.0, "relu") == pytest.approx(2.0, abs=5e-4)
    # chi_1 = sigma_w^2 / 2 whatever q*, so the critical line is sigma_w^2 = 2 for every bias
    assert critical_line([0.1, 1.0], "relu") == pytest.approx([2.0, 2.0], abs=5e-4)


@pytest.mark.parametrize("sigma_w2,sigma_b2,q_star", [
    (1.0, 0.1, 0.2),        # sigma_b^2 / (1 - sigma_w^2 / 2)
    (1.9, 0.1, 2.0),        # the same, at rate 0.95: past the plain iterations, solved by Brent
    (1.5, 0.0, 0.0),        # no bias: lengths shrink to 0
    (2.0, 0.0, 1.0),        # q' = q: the start stays
    (2.0, 0.1, math.inf),   # q' = q + sigma_b^2 grows without bound
    (2.5, 0.0, math.inf),
])
def test_relu_length_fixed_point(sigma_w2, sigma_b2, q_star):
    assert fixed_point_q(sigma_w2, sigma_b2, "relu") == pytest.approx(q_star, abs=1e-9)


def test_linear_net_closed_forms():
    # phi(x) = x, a plain callable: q' = sigma_w^2 q + sigma_b^2, chi_1 = sigma_w^2, critical at 1
    assert length_map(0.7, 0.5, 0.1, linear) == pytest.approx(0.45, abs=1e-12)
    assert fixed_point_q(0.5, 0.1, linear) == pytest.approx(0.2, abs=1e-9)   # sigma_b^2 / (1 - sigma_w^2)
    assert chi_1(0.5, 0.1, linear) == pytest.approx(0.5, abs=1e-12)
    assert critical_sigma_w2(0.0, linear) == pytest.approx(1.0, abs=5e-4)


@pytest.mark.parametrize("c", [0.0, 0.5, 0.9])
def test_relu_correlation_map_is_the_arccos_kernel(c):
    q, sigma_w2, sigma_b2 = 1.0, 2.0, 0.1
    kernel = q * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)  # E[relu(u1) relu(u2)]
    expected = (sigma_w2 * kernel + sigma_b2) / (sigma_w2 * q / 2 + sigma_b2)
    assert correlation_map(c, q, sigma_w2, sigma_b2, "relu") == pytest.approx(expected, abs=5e-3)


# ---------------------------------------------------------------------------------------------
# tanh: Poole et al. (2016) and Schoenholz et al. (2017) at sigma_b^2 = 0.05
# ---------------------------------------------------------------------------------------------

TANH_B2 = 0.05


@pytest.fixture(scope="module")
def tanh_critical():
    return critical_sigma_w2(TANH_B2, "tanh")


def test_tanh_critical_point(tanh_critical):
    assert tanh_critical == pytest.approx(1.761, abs=1e-3)     # Poole et al.: 1.76
    assert chi_1(tanh_critical, TANH_B2, "tanh") == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sigma_w2,xi_c", [(1.0, 3.6), (1.3, 7.8), (2.5, 11.8), (4.0, 7.0)])
def test_tanh_correlation_depth_scale(sigma_w2, xi_c):
    assert analyze(sigma_w2, TANH_B2, "tanh").xi_c == pytest.approx(xi_c, abs=0.15)


def test_tanh_depth_scale_diverges_at_criticality(tanh_critical):
    mf = analyze(tanh_critical, TANH_B2, "tanh")
    assert mf.xi_c > 100 and mf.c_star == 1.0 and math.isfinite(mf.xi_q)


def test_tanh_phases(tanh_critical):
    assert [phase(s, TANH_B2, "tanh") for s in (1.0, tanh_critical - 0.05)] == ["ordered", "ordered"]
    assert phase(tanh_critical, TANH_B2, "tanh") == "critical"
    assert [phase(s, TANH_B2, "tanh") for s in (tanh_critical + 0.05, 4.0)] == ["chaotic", "chaotic"]
    assert fixed_point_c(1.0, TANH_B2, "tanh") == 1.0 and fixed_point_c(4.0, TANH_B2, "tanh") < 0.5


def test_slopes_are_the_maps_derivatives():
    # chi_q (Stein's form) = dq'/dq at q*; chi_c (Price's form) = dc'/dc at c*: central differences
    sigma_w2, h = 2.5, 1e-5
    q = fixed_point_q(sigma_w2, TANH_B2, "tanh")
    dq = (length_map(q + h, sigma_w2, TANH_B2, "tanh") - length_map(q - h, sigma_w2, TANH_B2, "tanh")) / (2 * h)
    assert chi_q(sigma_w2, TANH_B2, "tanh") == pytest.approx(dq, abs=1e-7)
    c = fixed_point_c(sigma_w2, TANH_B2, "tanh")
    dc = (correlation_map(c + h, q, sigma_w2, TANH_B2, "tanh")
          - correlation_map(c - h, q, sigma_w2, TANH_B2, "tanh")) / (2 * h)
    assert chi_c(sigma_w2, TANH_B2, "tanh") == pytest.approx(dc, abs=1e-7)
    assert chi_c(1.0, TANH_B2, "tanh") == pytest.approx(chi_1(1.0, TANH_B2, "tanh"), abs=1e-12)  # c* = 1


def test_depth_scale():
    assert depth_scale(math.exp(-0.25)) == pytest.approx(4.0)
    assert depth_scale(1.0) == math.inf and depth_scale(1.5) == math.inf and depth_scale(0.0) == 0.0


# ---------------------------------------------------------------------------------------------
# Classic inits, over the registry
# ---------------------------------------------------------------------------------------------


def test_init_sigma_w2():
    assert init_sigma_w2("xavier", "tanh") == 1.0 and init_sigma_w2("lecun", "selu") == 1.0
    assert init_sigma_w2("kaiming", "relu") == pytest.approx(2.0)
    assert init_sigma_w2("he", "tanh") == pytest.approx(25 / 9)
    assert init_sigma_w2("orthogonal", "leaky_relu") == pytest.approx(2 / (1 + 0.01**2))
    with pytest.raises(UnknownNameError, match="xavier, glorot, kaiming"):
        init_sigma_w2("nope", "relu")
    with pytest.raises(ValueError, match="gain"):
        init_sigma_w2("kaiming", linear)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_kaiming_has_a_finite_length_for_every_activation(name):
    # sigma_b^2 = 0: with a bias, He's scale puts a ReLU at q' = q + sigma_b^2 (q* = inf)
    mf = analyze(init_sigma_w2("kaiming", name), 0.0, name)
    assert 0 < mf.q_star < math.inf
    assert -1.0 <= mf.c_star <= 1.0 and math.isfinite(mf.chi_1) and mf.chi_1 > 0


def test_unknown_activation_lists_the_names():
    with pytest.raises(UnknownNameError, match="relu"):
        analyze(1.0, 0.0, "nope")


# ---------------------------------------------------------------------------------------------
# The Jacobian: dynamical isometry (Pennington et al. 2017)
# ---------------------------------------------------------------------------------------------


def log_spread(s: np.ndarray) -> float:
    """Std of log singular values, over those numerically non-zero (numpy's matrix_rank cut:
    s > s_max N eps). Below it float64 cannot resolve them: a ReLU's D^l zero out half the units,
    so half of its singular values are exactly 0, and a product of 32 Gaussian matrices has
    singular values near 1e-39 that come out as rounding noise."""
    s = s[s > s.max() * len(s) * np.finfo(s.dtype).eps]
    return float(np.log(s).std())


def test_orthogonal_linear_net_is_an_isometry():
    s = jacobian_singular_values(32, 64, 1.0, 0.0, linear, weights="orthogonal", seed=3)
    assert np.abs(s - 1.0).max() < 1e-10


def test_jacobian_is_reproducible_and_checks_its_input():
    a = jacobian_singular_values(4, 16, 1.5, 0.05, "tanh", seed=7)
    assert np.array_equal(a, jacobian_singular_values(4, 16, 1.5, 0.05, "tanh", seed=7))
    assert not np.array_equal(a, jacobian_singular_values(4, 16, 1.5, 0.05, "tanh", seed=8))
    with pytest.raises(ValueError, match="gaussian, orthogonal"):
        jacobian_singular_values(4, 16, 1.5, 0.05, "tanh", weights="uniform")
    with pytest.raises(ValueError, match="infinite"):
        jacobian_singular_values(4, 16, 2.5, 0.0, "relu")


def spreads(sigma_w2, sigma_b2, activation):
    return [log_spread(jacobian_singular_values(32, 256, sigma_w2, sigma_b2, activation, weights=w, seed=0))
            for w in ("gaussian", "orthogonal")]


def test_orthogonal_tanh_at_criticality_is_isometric():
    # small sigma_b^2 -> small q* (0.046): tanh nearly linear, D^l near I (measured: 8.0 vs 0.40)
    gaussian, orthogonal = spreads(critical_sigma_w2(1e-4, "tanh"), 1e-4, "tanh")
    assert gaussian >= 5 * orthogonal


def test_orthogonal_relu_is_not_isometric():
    # D^l is 0 or 1, far from I whatever the weights (measured: 8.0 vs 7.2)
    gaussian, orthogonal = spreads(2.0, 0.0, "relu")
    assert gaussian < 2 * orthogonal and orthogonal < 2 * gaussian


def test_long_pre_activations_are_integrated_on_a_dense_grid():
    """tanh at sigma_w^2 = 30 has q* ~ 25: phi' is narrower than the Gauss-Hermite nodes' gaps there;
    chi_1 against a direct sum over a fine grid (3.1515)."""
    from initlab.init import mean_field as mf

    q = mf.fixed_point_q(30.0, 0.0, "tanh")
    z = np.linspace(-12, 12, 200001)
    w = np.exp(-z ** 2 / 2)
    w /= w.sum()
    assert mf.chi_1(30.0, 0.0, "tanh") == pytest.approx(30.0 * float(w @ np.cosh(np.sqrt(q) * z) ** -4), rel=1e-3)
    with pytest.raises(ValueError, match="2-D quadrature"):
        mf.correlation_map(0.5, 25.0, 30.0, 0.0, "tanh")


def test_inits_says_where_each_init_puts_a_deep_net(capsys):
    from initlab import cli

    assert cli.main(["inits", "--activation", "tanh"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert ": critical]" in lines["xavier"] and ": chaotic]" in lines["kaiming"]
    assert "needs data" in lines["lsuv"] and "no signal" in lines["zeros"]
    assert cli.main(["inits", "--activation", "relu"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert ": critical]" in lines["kaiming"] and ": ordered]" in lines["xavier"]
    assert cli.main(["inits", "--activation", "nope"]) == 2
