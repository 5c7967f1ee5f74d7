"""Tests for initlab.init: registry-wide properties, formulas, KS tests, peers in torch.nn.init.

The expected distributions below are written out by hand from the papers' formulas (the
ORACLES table), not read back from initlab.init, so a wrong formula there fails here. Every
registered initializer must have an oracle (test_every_initializer_has_an_oracle).
"""
from __future__ import annotations

import doctest
import importlib
import math
import pkgutil

import pytest
import torch
from torch import nn

import initlab.init as init_module
from initlab.init import (
    INITIALIZERS,
    MODEL_INITIALIZERS,
    calculate_gain,
    describe,
    fans,
    format_spec,
    gain_names,
    init_names,
    initialize,
    parse_spec,
)
from initlab.registry import UnknownNameError

SQRT2 = math.sqrt(2.0)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def apply(spec: str, shape, seed: int = 0, **kw) -> torch.Tensor:
    """Fill a fresh tensor of ``shape`` from ``spec`` with a generator seeded ``seed``."""
    name, params = parse_spec(spec)
    w = torch.empty(shape)
    INITIALIZERS.get(name)(w, generator=gen(seed), **kw, **params)
    return w


# ---------------------------------------------------------------------------------------------
# Oracles: the distribution each spec must produce, from the formulas in the papers
# ---------------------------------------------------------------------------------------------


def _Phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / SQRT2))


# Std of N(0, 1) truncated to [-2, 2] (closed form of the truncated-normal variance).
_phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNC_FACTOR = math.sqrt(1 - 2 * 2 * _phi2 / (_Phi(2) - _Phi(-2)))
assert abs(TRUNC_FACTOR - 0.8796256610342398) < 1e-12

# spec -> f(fan_in, fan_out) -> (kind, parameter):
#   ("normal", std) | ("uniform", bound b of U(-b, b)) | ("trunc", sigma of the normal cut at +-2 sigma)
#   | ("zero", 0) | ("ortho", gain)
ORACLES = {
    "zeros": lambda fi, fo: ("zero", 0.0),
    "uniform": lambda fi, fo: ("uniform", 1.0),
    "uniform:low=-0.3,high=0.3": lambda fi, fo: ("uniform", 0.3),
    "normal": lambda fi, fo: ("normal", 0.1),
    "normal:std=0.02": lambda fi, fo: ("normal", 0.02),
    "truncated_normal": lambda fi, fo: ("trunc", 0.1),
    "truncated_normal:std=0.5": lambda fi, fo: ("trunc", 0.5),
    "xavier": lambda fi, fo: ("normal", math.sqrt(2 / (fi + fo))),
    "xavier:gain=2": lambda fi, fo: ("normal", 2 * math.sqrt(2 / (fi + fo))),
    "xavier_uniform": lambda fi, fo: ("uniform", math.sqrt(6 / (fi + fo))),
    "xavier_uniform:gain=0.5": lambda fi, fo: ("uniform", 0.5 * math.sqrt(6 / (fi + fo))),
    "kaiming": lambda fi, fo: ("normal", math.sqrt(2 / fi)),
    "kaiming:a=0.2,mode=fan_out": lambda fi, fo: ("normal", math.sqrt(2 / ((1 + 0.04) * fo))),
    "kaiming_uniform": lambda fi, fo: ("uniform", math.sqrt(6 / fi)),
    "kaiming_uniform:a=1,mode=fan_out": lambda fi, fo: ("uniform", math.sqrt(6 / (2 * fo))),
    "lecun_normal": lambda fi, fo: ("normal", 1 / math.sqrt(fi)),
    "lecun_uniform": lambda fi, fo: ("uniform", math.sqrt(3 / fi)),
    "orthogonal": lambda fi, fo: ("ortho", SQRT2),  # gain = calculate_gain("relu")
    "torch_default": lambda fi, fo: ("uniform", 1 / math.sqrt(fi)),
    "variance_scaling": lambda fi, fo: ("normal", 1 / math.sqrt(fi)),
    "variance_scaling:scale=2,mode=fan_avg,distribution=uniform": lambda fi, fo: (
        "uniform", math.sqrt(3 * 2 / ((fi + fo) / 2))),
    "variance_scaling:scale=3,mode=fan_out,distribution=truncated_normal": lambda fi, fo: (
        "trunc", math.sqrt(3 / fo) / TRUNC_FACTOR),
    "constant": lambda fi, fo: ("const", 0.01),
    "constant:value=-0.5": lambda fi, fo: ("const", -0.5),
    "zero_one": lambda fi, fo: ("zero_one", None),
}
# deterministic: every seed gives the same weights
DETERMINISTIC = ("zeros", "constant", "zero_one")

# (shape, fan_in, fan_out) written out by hand: Linear(800, 1000) and Conv2d(32, 64, 5).
BIG_SHAPES = [((1000, 800), 800, 1000), ((64, 32, 5, 5), 800, 1600)]
SMALL_SHAPES = [(64, 32), (16, 8, 3, 3), (6, 4, 5)]  # Linear, Conv2d, Conv1d


def expected_std(kind: str, p: float, shape) -> float:
    if kind == "zero":
        return 0.0
    if kind == "normal":
        return p
    if kind == "uniform":
        return p / math.sqrt(3)  # Var U(-b, b) = b^2 / 3
    if kind == "trunc":
        return p * TRUNC_FACTOR
    # ortho: rows of W (or its columns, if tall) are orthonormal * gain, so the
    # mean square entry is gain^2 * min(r, c) / (r * c) = gain^2 / max(r, c).
    rows, cols = shape[0], math.prod(shape[1:])
    return p / math.sqrt(max(rows, cols))


def ks_statistic(x: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov D = sup |F_n - F| (no scipy needed)."""
    x, _ = torch.sort(x.flatten().double())
    n = x.numel()
    f = cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max((i / n - f).max().item(), (f - (i - 1) / n).max().item())


def ks_threshold(n: int) -> float:
    return 1.95 / math.sqrt(n)  # asymptotic critical value at alpha = 0.001


def cdf_for(kind: str, p: float):
    if kind == "normal":
        return lambda x: 0.5 * (1 + torch.erf(x / (p * SQRT2)))
    if kind == "uniform":
        return lambda x: ((x + p) / (2 * p)).clamp(0, 1)
    if kind == "trunc":
        lo, hi = _Phi(-2), _Phi(2)
        return lambda x: ((0.5 * (1 + torch.erf(x / (p * SQRT2))) - lo) / (hi - lo)).clamp(0, 1)
    return None


# ---------------------------------------------------------------------------------------------
# Registry-wide properties (every registered initializer, no one has to remember)
# ---------------------------------------------------------------------------------------------


def test_registered_names():
    assert set(INITIALIZERS.names()) >= {
        "zeros", "uniform", "normal", "xavier", "kaiming", "xavier_uniform", "kaiming_uniform",
        "lecun_normal", "lecun_uniform", "truncated_normal", "orthogonal", "torch_default", "variance_scaling",
    }
    assert "lsuv" in MODEL_INITIALIZERS.names()
    assert init_names() == INITIALIZERS.names() + MODEL_INITIALIZERS.names()


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_every_initializer_has_an_oracle(name):
    assert name in ORACLES, f"add the formula of {name!r} to ORACLES in tests/test_init.py"


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=str)
@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_shape_dtype_and_reproducibility(name, shape):
    a, b = apply(name, shape, seed=7), apply(name, shape, seed=7)
    assert a.shape == shape and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    c = apply(name, shape, seed=8)
    if name in DETERMINISTIC:
        assert torch.equal(a, c)
    else:
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_global_rng_untouched_and_works_on_parameters(name):
    state = torch.random.get_rng_state()
    w = nn.Parameter(torch.full((32, 16), 7.0))  # requires_grad: fails outside no_grad
    INITIALIZERS.get(name)(w, generator=gen(0))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(w.detach(), torch.full((32, 16), 7.0))
    assert w.requires_grad and w.grad_fn is None


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_docstring_has_summary_paper_formula_example(name):
    doc = INITIALIZERS.get(name).__doc__
    assert doc and doc.strip().splitlines()[0].endswith(".")
    assert "Paper:" in doc and ".. math::" in doc and ">>>" in doc and "Args:" in doc


def test_doctests_run():
    # every module of the package, with the names a reader has after `from initlab import init` and
    # `from initlab.init import *` (an example may call `initialize` or `init.initialize`)
    names = {**{n: getattr(init_module, n) for n in init_module.__all__}, "init": init_module}
    runs = [doctest.testmod(importlib.import_module(m.name), extraglobs=names, optionflags=doctest.ELLIPSIS)
            for m in pkgutil.iter_modules(init_module.__path__, prefix="initlab.init.")]
    result = doctest.TestResults(*map(sum, zip(*runs)))
    assert result.attempted > 20 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# Statistics against the formulas
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,fan_in,fan_out", BIG_SHAPES, ids=["linear", "conv"])
@pytest.mark.parametrize("spec", list(ORACLES))
def test_statistics_match_formula(spec, shape, fan_in, fan_out):
    kind, p = ORACLES[spec](fan_in, fan_out)
    w = apply(spec, shape, seed=1).double()
    n = w.numel()
    if kind == "zero":
        assert torch.count_nonzero(w) == 0
        return
    if kind == "const":
        assert torch.allclose(w, torch.full_like(w, p), rtol=1e-6, atol=0)
        return
    if kind == "zero_one":
        check_zero_one(w)
        return
    std = expected_std(kind, p, shape)
    assert abs(w.std().item() / std - 1) < 0.025, (w.std().item(), std)
    assert abs(w.mean().item()) < 5 * std / math.sqrt(n)
    if kind in ("uniform", "trunc"):
        bound = p if kind == "uniform" else 2 * p
        amax = w.abs().max().item()
        assert amax <= bound * (1 + 1e-6) and amax > 0.99 * bound
    cdf = cdf_for(kind, p)
    if cdf is not None:
        assert ks_statistic(w, cdf) < ks_threshold(n)


def check_zero_one(w: torch.Tensor) -> None:
    """ZerO (Zhao et al. 2022, Algorithms 1-2): a conv kernel is zero but at its centre; the centre
    (out, in) matrix is the partial identity when out <= in, else Hadamard signs / 2^(k/2)."""
    m, n = w.shape[:2]
    if w.dim() == 4:
        centre = w[:, :, w.shape[2] // 2, w.shape[3] // 2]
        assert torch.count_nonzero(w) == torch.count_nonzero(centre)
        w = centre
    if m <= n:
        assert torch.equal(w, torch.eye(m, n, dtype=w.dtype))
        return
    k = math.ceil(math.log2(m))
    assert torch.allclose(w.abs(), torch.full_like(w, 2 ** (-k / 2)))
    signs = torch.sign(w)
    assert torch.equal(signs[0], torch.ones(n, dtype=w.dtype))             # H's first row: all +1
    assert torch.equal(signs[:, 0], torch.ones(m, dtype=w.dtype))          # and first column
    assert torch.equal(signs[1, :4], torch.tensor([1, -1, 1, -1], dtype=w.dtype))


@pytest.mark.parametrize("m,n", [(4, 2), (8, 8), (16, 5), (256, 64)])
def test_zero_one_widening_layers_have_orthonormal_columns_at_powers_of_two(m, n):
    w = torch.empty(m, n)
    INITIALIZERS.get("zero_one")(w, generator=gen(0))
    assert torch.allclose(w.T @ w, torch.eye(n), atol=1e-6)


@pytest.mark.parametrize("m,n,distinct", [(64, 16, 16), (64, 5, 8), (10, 4, 4), (300, 256, 256)])
def test_zero_one_widening_rows_repeat_with_the_hadamard_period(m, n, distinct):
    """Row i of a widening ZerO layer is H[i, :n]: it depends on i mod 2^ceil(log2 n) only."""
    w = torch.empty(m, n)
    INITIALIZERS.get("zero_one")(w, generator=gen(0))
    assert len({tuple(r.tolist()) for r in w}) == distinct


def test_ks_statistic_can_reject():
    """The KS check tells a normal from a uniform of equal std (so it can fail)."""
    x = torch.randn(51200, generator=gen(0))
    assert ks_statistic(x, cdf_for("normal", 1.0)) < ks_threshold(x.numel())
    assert ks_statistic(x, cdf_for("uniform", math.sqrt(3))) > ks_threshold(x.numel())
    assert ks_statistic(x, cdf_for("trunc", 1.0 / TRUNC_FACTOR)) > ks_threshold(x.numel())


def test_uniform_low_high_asymmetric():
    w = apply("uniform:low=2,high=5", (300, 200))
    assert w.min() >= 2 and w.max() <= 5
    assert abs(w.mean().item() - 3.5) < 0.01


def test_normal_mean():
    w = apply("normal:mean=1.5,std=0.2", (300, 200))
    assert abs(w.mean().item() - 1.5) < 0.005 and abs(w.std().item() - 0.2) < 0.005


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 5, 5), (20, 50), (50, 20), (8, 3, 3, 3)], ids=str)
@pytest.mark.parametrize("gain,activation", [(None, "relu"), (None, "tanh"), (1.0, "relu"), (0.5, "tanh")])
def test_orthogonal_is_orthogonal(shape, gain, activation):
    w = torch.empty(shape)
    INITIALIZERS.get("orthogonal")(w, generator=gen(3), activation=activation, gain=gain)
    g = calculate_gain(activation) if gain is None else gain
    m = w.reshape(shape[0], -1).double()  # (out, in * kh * kw)
    rows, cols = m.shape
    prod = m @ m.T if rows <= cols else m.T @ m
    eye = torch.eye(min(rows, cols), dtype=torch.float64)
    assert torch.allclose(prod, g**2 * eye, atol=1e-4 * g**2)


# ---------------------------------------------------------------------------------------------
# Peers: torch.nn.init on the same generator and seed (same draw order, so same values)
# ---------------------------------------------------------------------------------------------

I = torch.nn.init
PEERS = {
    "zeros": lambda w, g: I.zeros_(w),
    "uniform": lambda w, g: I.uniform_(w, -1.0, 1.0, generator=g),
    "normal": lambda w, g: I.normal_(w, 0.0, 0.1, generator=g),
    "xavier": lambda w, g: I.xavier_normal_(w, generator=g),
    "xavier:gain=2": lambda w, g: I.xavier_normal_(w, gain=2.0, generator=g),
    "xavier_uniform": lambda w, g: I.xavier_uniform_(w, generator=g),
    "xavier_uniform:gain=0.5": lambda w, g: I.xavier_uniform_(w, gain=0.5, generator=g),
    "kaiming": lambda w, g: I.kaiming_normal_(w, nonlinearity="relu", generator=g),
    "kaiming:a=0.2,mode=fan_out": lambda w, g: I.kaiming_normal_(w, a=0.2, mode="fan_out", generator=g),
    "kaiming_uniform": lambda w, g: I.kaiming_uniform_(w, nonlinearity="relu", generator=g),
    "kaiming_uniform:a=1,mode=fan_out": lambda w, g: I.kaiming_uniform_(w, a=1.0, mode="fan_out", generator=g),
    "lecun_normal": lambda w, g: I.kaiming_normal_(w, nonlinearity="linear", generator=g),
    "lecun_uniform": lambda w, g: I.kaiming_uniform_(w, nonlinearity="linear", generator=g),
    "variance_scaling": lambda w, g: I.kaiming_normal_(w, nonlinearity="linear", generator=g),
    "orthogonal": lambda w, g: I.orthogonal_(w, gain=SQRT2, generator=g),
    "orthogonal:gain=1": lambda w, g: I.orthogonal_(w, gain=1.0, generator=g),
    "torch_default": lambda w, g: I.kaiming_uniform_(w, a=math.sqrt(5), generator=g),
}


@pytest.mark.parametrize("shape", [(300, 200), (20, 50), (16, 8, 3, 3)], ids=str)
@pytest.mark.parametrize("spec", list(PEERS))
def test_matches_torch_nn_init(spec, shape):
    ours = apply(spec, shape, seed=11)
    theirs = torch.empty(shape)
    PEERS[spec](theirs, gen(11))
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def ks_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample KS D = sup |F_a - F_b| over the pooled sample."""
    a, _ = torch.sort(a.flatten().double())
    b, _ = torch.sort(b.flatten().double())
    z = torch.cat([a, b])
    fa = torch.searchsorted(a, z, right=True) / a.numel()
    fb = torch.searchsorted(b, z, right=True) / b.numel()
    return (fa - fb).abs().max().item()


# torch 2.13's trunc_normal_ rejection-samples (our inverse CDF draws differently): compare distributions.
@pytest.mark.parametrize("spec,mean,std", [("truncated_normal", 0.0, 0.1),
                                           ("truncated_normal:std=0.5,mean=1", 1.0, 0.5)])
def test_truncated_normal_matches_torch_in_distribution(spec, mean, std):
    shape = (500, 400)
    ours, theirs = apply(spec, shape, seed=11), torch.empty(shape)
    I.trunc_normal_(theirs, mean, std, mean - 2 * std, mean + 2 * std, generator=gen(12))
    n = ours.numel()
    assert ks_two_sample(ours, theirs) < 1.95 * math.sqrt(2 / n)  # alpha = 0.001
    assert abs(ours.std().item() / theirs.std().item() - 1) < 0.01
    assert ours.min() >= mean - 2 * std and ours.max() <= mean + 2 * std


def test_calculate_gain_matches_torch():
    for name in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]:
        assert calculate_gain(name) == pytest.approx(I.calculate_gain(name)), name
    assert calculate_gain("leaky_relu", 0.2) == pytest.approx(I.calculate_gain("leaky_relu", 0.2))


# ---------------------------------------------------------------------------------------------
# torch_default: PyTorch's own reset_parameters
# ---------------------------------------------------------------------------------------------


def _lenet():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))


@pytest.mark.parametrize("make", [lambda: nn.Linear(800, 1000), lambda: nn.Conv2d(32, 64, 5), _lenet],
                         ids=["linear", "conv", "lenet"])
def test_torch_default_reproduces_reset_parameters(make):
    with torch.random.fork_rng():
        torch.manual_seed(123)
        ref = make()  # PyTorch's reset_parameters, from the global RNG
        model = make()
    info = initialize(model, "torch_default", generator=gen(123))
    assert info["bias"] == "torch_default"
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


@pytest.mark.parametrize("layer,fan_in", [(nn.Linear(800, 1000), 800), (nn.Conv2d(32, 64, 5), 800)],
                         ids=["linear", "conv"])
def test_torch_default_statistics(layer, fan_in):
    initialize(layer, "torch_default", generator=gen(5))
    bound = 1 / math.sqrt(fan_in)
    w, b = layer.weight.detach(), layer.bias.detach()
    assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.025
    assert w.abs().max() <= bound and b.abs().max() <= bound
    assert b.abs().max() > 0.9 * bound and abs(b.std().item() / (bound / math.sqrt(3)) - 1) < 0.15


def test_torch_default_explicit_bias_wins():
    net = _lenet()
    info = initialize(net, "torch_default", generator=gen(0), bias=0.0)
    assert info["bias"] == 0.0
    assert all(torch.count_nonzero(m.bias) == 0 for m in (net[0], net[3]))


# ---------------------------------------------------------------------------------------------
# fans, calculate_gain, variance_scaling arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer,expected", [
    (nn.Linear(800, 1000), (800, 1000)),
    (nn.Conv2d(32, 64, 5), (32 * 25, 64 * 25)),
    (nn.Conv2d(2, 4, (3, 5)), (2 * 15, 4 * 15)),
    (nn.Conv1d(4, 6, 3), (12, 18)),
    (nn.Conv2d(32, 64, 3, groups=4), (8 * 9, 64 * 9)),  # fan_in per group
    (nn.Conv3d(2, 3, 2), (16, 24)),
], ids=["linear", "conv2d", "conv2d_rect", "conv1d", "grouped", "conv3d"])
def test_fans(layer, expected):
    assert fans(layer.weight) == expected


def test_fans_rejects_vectors():
    with pytest.raises(ValueError, match="2 dims"):
        fans(torch.empty(10))


def test_calculate_gain_table():
    expected = {
        "linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
        "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
        "sigmoid": 1.0, "tanh": 5 / 3, "relu": SQRT2, "leaky_relu": math.sqrt(2 / (1 + 0.01**2)),
        "selu": 0.75, "scaled_tanh": 1.0, "maxout": 1.0,
        "very_leaky_relu": math.sqrt(2 / (1 + 0.33**2)),
    }
    assert set(gain_names()) == set(expected)
    for name, g in expected.items():
        assert calculate_gain(name) == pytest.approx(g, rel=1e-12), name
    assert calculate_gain("leaky_relu", 0.0) == pytest.approx(SQRT2)
    assert calculate_gain("leaky_relu", 1.0) == pytest.approx(1.0)
    assert calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))


def test_calculate_gain_errors():
    with pytest.raises(UnknownNameError, match=r"'swish'.*relu.*tanh"):
        calculate_gain("swish")
    with pytest.raises(ValueError, match="negative slope"):
        calculate_gain("leaky_relu", "steep")


@pytest.mark.parametrize("spec,match", [
    ("variance_scaling:mode=fan_avgg", "fan_in, fan_out, fan_avg"),
    ("variance_scaling:distribution=laplace", "normal, uniform, truncated_normal"),
    ("kaiming:mode=fan_avg", "fan_in, fan_out"),
    ("kaiming_uniform:mode=both", "fan_in, fan_out"),
    ("variance_scaling:scale=-1", "scale >= 0"),
    ("uniform:low=1,high=1", "low < high"),
    ("truncated_normal:std=0", "std > 0"),
])
def test_bad_initializer_arguments(spec, match):
    with pytest.raises(ValueError, match=match):
        apply(spec, (4, 3))


# ---------------------------------------------------------------------------------------------
# parse_spec / format_spec / describe
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec,expected", [
    ("kaiming_uniform:mode=fan_out,a=0.1", ("kaiming_uniform", {"mode": "fan_out", "a": 0.1})),
    ("zeros", ("zeros", {})),
    ("kaiming:", ("kaiming", {})),
    ("  normal : std = 0.02 ", ("normal", {"std": 0.02})),
    ("uniform:low=-2,high=1e-1", ("uniform", {"low": -2, "high": 0.1})),
    ("lsuv:tol=0.05,max_iter=3", ("lsuv", {"tol": 0.05, "max_iter": 3})),
    ("variance_scaling:distribution=truncated_normal", ("variance_scaling", {"distribution": "truncated_normal"})),
])
def test_parse_spec_good(spec, expected):
    name, params = parse_spec(spec)
    assert (name, params) == expected
    assert [type(v) for v in params.values()] == [type(v) for v in expected[1].values()]
    assert parse_spec(format_spec(name, params)) == expected  # round trip


@pytest.mark.parametrize("spec,match", [
    ("", "expected 'name'"),
    (":a=1", "expected 'name'"),
    ("kaiming mode=fan_out", "expected 'name'"),
    ("kaiming:mode", "not key=value"),
    ("kaiming:=1", "not key=value"),
    ("kaiming:a=", "not key=value"),
    ("kaiming:a=1,,mode=fan_in", "not key=value"),
    ("kaiming:a=1,a=2", "given twice"),
    ("kaiming:b=1", "unknown parameter 'b' for initializer 'kaiming'; valid: a, mode"),
    ("zeros:a=1", "valid: none"),
    ("lsuv:data=1", "valid: tol, max_iter"),
    ("kaiming:generator=1", "valid: a, mode"),
])
def test_parse_spec_bad(spec, match):
    with pytest.raises(ValueError, match=match) as exc:
        parse_spec(spec)
    assert "\n" not in str(exc.value)


def test_parse_spec_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as exc:
        parse_spec("kaiming_normal:a=1")
    msg = str(exc.value)
    assert "\n" not in msg and "'kaiming_normal'" in msg
    assert all(n in msg for n in init_names())


@pytest.mark.parametrize("name", init_names())
def test_describe(name):
    text = describe(name)
    assert text.startswith(name + "(") and len(text) < 200
    assert "\n" not in text


def test_describe_resolves_params():
    assert describe("kaiming:mode=fan_out").startswith("kaiming(a=0.0, mode='fan_out'): N(0, 2/")


# ---------------------------------------------------------------------------------------------
# initialize()
# ---------------------------------------------------------------------------------------------


class Net(nn.Module):
    """Conv -> BN -> Conv (no bias) -> MLP head with dropout; input (N, 3, 8, 8)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),  # (N, 8, 6, 6)
            nn.Conv2d(8, 8, 3, bias=False), nn.ReLU(),         # (N, 8, 4, 4)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(8 * 4 * 4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.head(self.features(x))


LAYERS = ["features.0", "features.3", "head.1", "head.4"]


def _layers(net):
    return [dict(net.named_modules())[n] for n in LAYERS]


@pytest.mark.parametrize("name", INITIALIZERS.names())
def test_initialize_constant_bias_and_info(name):
    net = Net()
    state = torch.random.get_rng_state()
    info = initialize(net, name, generator=gen(0), bias=0.25)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert info["init"] == name and info["name"] == name and info["params"] == {}
    assert info["layers"] == LAYERS and info["bias"] == 0.25
    for m in _layers(net):
        if m.bias is not None:
            assert torch.all(m.bias == 0.25)
    bn = net.features[1]  # not a Conv/Linear: untouched
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("name", [n for n in INITIALIZERS.names() if n != "torch_default"])
def test_initialize_default_bias_is_zero(name):
    net = Net()
    info = initialize(net, name, generator=gen(0))
    assert info["bias"] == 0.0
    assert all(torch.count_nonzero(m.bias) == 0 for m in _layers(net) if m.bias is not None)


def test_initialize_zeros_gives_zero_model():
    net = Net()
    initialize(net, "zeros", generator=gen(0))
    for m in _layers(net):
        assert all(torch.count_nonzero(p) == 0 for p in m.parameters())
    net.eval()
    assert torch.count_nonzero(net(torch.randn(2, 3, 8, 8, generator=gen(1)))) == 0


def test_initialize_visits_layers_in_definition_order():
    net = Net()
    initialize(net, "kaiming:mode=fan_out", generator=gen(4), bias=0.0)
    g = gen(4)
    for m in _layers(net):
        w = torch.empty_like(m.weight)
        INITIALIZERS.get("kaiming")(w, generator=g, mode="fan_out")
        assert torch.equal(m.weight.detach(), w)


def test_initialize_passes_params_and_activation():
    net = Net()
    initialize(net, "normal:std=0.5", generator=gen(0))
    assert abs(net.head[1].weight.std().item() - 0.5) < 0.03  # 4096 samples
    initialize(net, "orthogonal", generator=gen(0), activation="tanh")
    w = net.head[1].weight.detach().double()  # (32, 128): rows orthogonal
    assert torch.allclose(w @ w.T, (5 / 3) ** 2 * torch.eye(32, dtype=torch.float64), atol=1e-4)


def test_initialize_unknown_name():
    with pytest.raises(UnknownNameError, match=r"kaiming.*lsuv"):
        initialize(Net(), "he_normal", generator=gen(0))


# ---------------------------------------------------------------------------------------------
# LSUV (model-level, data-dependent)
# ---------------------------------------------------------------------------------------------


def _output_vars(net, x):
    """Each Conv/Linear's output variance on x, measured independently with hooks."""
    out = {}
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: out.__setitem__(n, o.var().item()))
               for n, m in zip(LAYERS, _layers(net))]
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return out


def test_lsuv_gives_unit_output_variance():
    net = Net()
    x = torch.randn(64, 3, 8, 8, generator=gen(1))
    state = torch.random.get_rng_state()
    info = initialize(net, "lsuv", generator=gen(0), data=x)
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout never ran
    assert net.training  # mode restored
    assert torch.count_nonzero(net.features[1].running_mean) == 0  # BN stats untouched
    assert info["init"] == "lsuv" and list(info["lsuv_iters"]) == LAYERS
    assert all(0 <= t <= 1 for t in info["lsuv_iters"].values())  # zero bias: one rescale is exact
    for n, v in _output_vars(net, x).items():
        assert abs(v - 1) < 0.1, n
        assert v == pytest.approx(info["lsuv_var"][n], rel=1e-4)


def test_lsuv_tolerance_and_reproducibility():
    x = torch.randn(64, 3, 8, 8, generator=gen(1))
    a, b = Net(), Net()
    info = initialize(a, "lsuv:tol=0.001", generator=gen(0), data=x, bias=0.1)
    initialize(b, "lsuv:tol=0.001", generator=gen(0), data=x, bias=0.1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(abs(v - 1) < 0.001 for v in _output_vars(a, x).values())
    assert all(t <= 10 for t in info["lsuv_iters"].values())


def test_lsuv_max_iter_zero_leaves_orthogonal_start():
    net = Net()
    info = initialize(net, "lsuv:max_iter=0", generator=gen(0), data=torch.randn(8, 3, 8, 8, generator=gen(1)))
    assert set(info["lsuv_iters"].values()) == {0}
    w = net.head[1].weight.detach().double()
    assert torch.allclose(w @ w.T, torch.eye(32, dtype=torch.float64), atol=1e-4)


def test_lsuv_needs_data():
    with pytest.raises(ValueError, match="data"):
        initialize(Net(), "lsuv", generator=gen(0))
