r"""Signal propagation at initialization: measured per layer, next to what the variance formula predicts.

No training. For every init x activation x seed, a deep plain net (``mlp``: ``depth`` hidden layers of
``width`` units, or 3x3 convolutions with ``width`` channels and padding 1 with ``conv=True``) gets
one batch of real images, one forward and one backward pass. Per weight layer l we record

* ``forward_std``: the std of the layer's output :math:`y_l = W_l x_{l-1} + b_l` (the pre-activation,
  over images, units and positions);
* ``post_std``: the std of :math:`x_l = f(y_l)`, what the next layer reads;
* ``backward_std``: the std of :math:`\partial L / \partial y_l`, with :math:`L` the cross-entropy of
  the true labels *summed* over the batch (so each image's gradient is its own, not divided by the
  batch size);
* ``predicted_std`` / ``predicted_backward_std``: the variance formula's prediction.

The prediction (Glorot & Bengio 2010; He, Zhang, Ren & Sun 2015, eqs. 7-14). With weights drawn
independently with zero mean, for any fixed input,

.. math::
    E[y_l^2] = n_l\,\operatorname{Var}(w_l)\,E[x_{l-1}^2] + E[b_l^2], \qquad
    E[x_l^2] = \phi(E[y_l^2]),

with :math:`n_l` = fan_in (``init.fans``). :math:`\phi` is exact for the activations that only see
the sign of a symmetric :math:`y`: linear :math:`\phi(q) = q`; ReLU :math:`\phi(q) = q/2` (He's factor
1/2, hence :math:`\operatorname{Var}(y_l) = n_l \operatorname{Var}(w_l) \operatorname{Var}(y_{l-1})/2`);
leaky ReLU with slope a, :math:`\phi(q) = (1 + a^2) q / 2`. For tanh, scaled tanh, sigmoid and SELU
:math:`\phi(q) = E_{z \sim N(0, q)}[f(z)^2]` (numerical integration) assumes a Gaussian
:math:`y` — the mean-field approximation of Poole et al. (2016) — so there the line is an
approximation (``prediction = mean-field`` in the table, dashed-dotted in the plot). The chain starts
from the *measured* :math:`E[x_0^2]` of the input images and is compounded layer by layer (a prediction,
not a per-layer fit). :math:`\operatorname{Var}(w_l)` is the init's theoretical value from its formula
(:data:`WEIGHT_SECOND_MOMENT`; the formula assumes zero-mean weights, so a spec like
``normal:mean=0.1`` is predicted wrongly); for data-dependent inits (``lsuv``, ``dbn``) and any init the table does
not know, the empirical mean of :math:`w^2` of the drawn weight (``var_source`` says which).
:math:`E[b^2]` is measured on the bias (every bias is the constant ``bias_init``, 0 by default). For conv layers the
second moment is propagated as a map over positions (a 3x3 box sum of the map below, zero outside),
so the zero padding at the border is in the prediction too.

Backward, from the measured gradient at the logits downwards, assuming :math:`f'(y)` independent of
the gradient that reaches it (He et al. 2015, eq. 13):

.. math::
    E[(\partial L/\partial x_{l-1})^2] = \hat n_l \operatorname{Var}(w_l) E[(\partial L/\partial y_l)^2],
    \qquad E[(\partial L/\partial y_{l-1})^2] = \psi(E[y_{l-1}^2])\,E[(\partial L/\partial x_{l-1})^2]

with :math:`\hat n_l` = fan_out and :math:`\psi(q) = E[f'(z)^2]` (1 linear, 1/2 ReLU, :math:`(1+a^2)/2`
leaky; numerical integration otherwise).

The prediction is the expectation over weight draws. One draw of a *narrow* net scatters around it,
and with depth the typical (geometric-mean) draw falls below it: the spread of the log-norm of the
activations grows with the sum of reciprocal widths :math:`\sum_l 1/n_l` (Hanin & Rolnick 2018, "How
to start training: the effect of initialization and architecture"), while the mean stays fixed.
Measured with ReLU + kaiming, 20 conv layers, 4 seeds: last/first forward std 0.16, 0.44, 0.87 at 16,
32, 64 channels; 0.99 for 20 fully connected layers of 256 units.

``run_probe(cfg)`` returns the rows of ``probe.csv``; ``write_probe`` writes them, and
``initlab.experiments.probe_report`` makes ``probe.png`` and a report whose sentences are computed from
the rows.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initlab import activations as acts_mod
from initlab import data as data_mod
from initlab import engine, files, init, models
from initlab.activations import Activation
from initlab.experiments import probe_report, study
from initlab.experiments.limits import check_seeds
from initlab.options import flag

# The identity, for the probe only: the one activation where the formula has no approximation at all.
LINEAR = Activation("linear", lambda x: x, "linear")

PROBE_INITS = ("uniform", "normal", "xavier", "kaiming", "lecun_normal", "orthogonal", "lsuv")
PROBE_ACTIVATIONS = ("linear", "relu", "leaky_relu", "very_leaky_relu", "tanh", "scaled_tanh",
                     "sigmoid", "selu")
LSUV_IMAGES = 256      # images a data-dependent init sees (a separate batch from the probe's)
PROBE_SUBSET_SEED = 0  # the probe images are the first N of a shuffle with this seed, for every seed


def activation_names() -> List[str]:
    return ["linear"] + acts_mod.ACTIVATIONS.names()


def get_activation(name: str) -> Activation:
    return LINEAR if name == "linear" else acts_mod.get(name)


def init_activation_name(act: Activation) -> str:
    """The name ``init.initialize`` gets (it looks gains up by name): the activation's own name when the
    gain table knows it (every registered activation), else its gain key."""
    return act.name if act.name in init.gain_names() else act.gain_key


# --------------------------------------------------------------------------------------------------
# Theory: Var(w) of each init from its formula, and the activation's phi / psi
# --------------------------------------------------------------------------------------------------

def _mode_fan(fan_in: int, fan_out: int, mode: str) -> float:
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


#: name -> E[w^2](shape, fan_in, fan_out, resolved params, activation name): the second moment of one
#: weight entry under the init's formula (the variance for the zero-mean ones). See ``init``'s docstrings.
WEIGHT_SECOND_MOMENT: Dict[str, Callable[..., float]] = {
    "zeros": lambda s, fi, fo, p, a: 0.0,
    "uniform": lambda s, fi, fo, p, a: (p["low"] ** 2 + p["low"] * p["high"] + p["high"] ** 2) / 3,
    "normal": lambda s, fi, fo, p, a: p["std"] ** 2 + p["mean"] ** 2,
    "truncated_normal": lambda s, fi, fo, p, a: (init.TRUNC_STD_FACTOR * p["std"]) ** 2 + p["mean"] ** 2,
    "xavier": lambda s, fi, fo, p, a: p["gain"] ** 2 * 2 / (fi + fo),
    "xavier_uniform": lambda s, fi, fo, p, a: p["gain"] ** 2 * 2 / (fi + fo),
    "kaiming": lambda s, fi, fo, p, a: 2 / ((1 + p["a"] ** 2) * _mode_fan(fi, fo, p["mode"])),
    "kaiming_uniform": lambda s, fi, fo, p, a: 2 / ((1 + p["a"] ** 2) * _mode_fan(fi, fo, p["mode"])),
    "lecun_normal": lambda s, fi, fo, p, a: 1 / fi,
    "lecun_uniform": lambda s, fi, fo, p, a: 1 / fi,
    "variance_scaling": lambda s, fi, fo, p, a: p["scale"] / _mode_fan(fi, fo, p["mode"]),
    # W W^T = g^2 I (or W^T W): every row (column) has norm g, so E[w^2] = g^2 / max(out, in*k), exactly
    "orthogonal": lambda s, fi, fo, p, a: (init.calculate_gain(a) if p["gain"] is None else p["gain"]) ** 2
    / max(s[0], math.prod(s[1:])),
    "torch_default": lambda s, fi, fo, p, a: 1 / (3 * fi),   # U(-b, b), b = 1/sqrt(fan_in)
}


def theoretical_second_moment(spec: str, shape: Sequence[int], activation: str) -> Optional[float]:
    """E[w^2] of one entry of a weight of ``shape`` under ``spec``'s formula; None if unknown (model-level
    or unlisted inits).

    Example:
        >>> theoretical_second_moment("kaiming", (256, 256), "relu") == 2 / 256
        True
    """
    name, params = init.parse_spec(spec)
    if name not in WEIGHT_SECOND_MOMENT:
        return None
    fan_in, fan_out = init.fans(torch.empty(tuple(shape), device="meta"))
    return float(WEIGHT_SECOND_MOMENT[name](tuple(shape), fan_in, fan_out,
                                            {**init.init_params(name), **params}, activation))


# Gaussian expectations on a merged grid: 801 points over +-8 std (the Gaussian's scale) and 2401 over
# z in [-12, 12] (the scale where tanh / sigmoid / SELU bend). A quadrature in units of the std alone
# (Gauss-Hermite) misses the bend once the std is large (saturated units) and f' lives near 0 only.
_U = torch.linspace(-8.0, 8.0, 801, dtype=torch.float64)
_Z = torch.linspace(-12.0, 12.0, 2401, dtype=torch.float64)


def exact_activation(act: Activation) -> bool:
    """True where phi (forward) is exact for any symmetric pre-activation: linear and (leaky) ReLUs."""
    return act.gain_key in ("linear", "relu", "leaky_relu")


def moments(act: Activation, q: Tensor) -> Tuple[Tensor, Tensor]:
    """(phi(q), psi(q)) = (E[f(z)^2], E[f'(z)^2]) for z ~ N(0, q), elementwise over a tensor of q.

    Closed forms for linear and (leaky) ReLU; otherwise the trapezoid rule on the merged grid above,
    normalized by the grid's Gaussian mass, with f' from autograd.

    Example:
        >>> phi, psi = moments(acts_mod.get("relu"), torch.tensor([2.0]))
        >>> float(phi), float(psi)
        (1.0, 0.5)
    """
    q = q.double()
    if act.gain_key == "linear":
        return q, torch.ones_like(q)
    if act.gain_key in ("relu", "leaky_relu"):
        a = 0.0 if act.gain_key == "relu" else act.gain_param
        k = (1 + a * a) / 2
        return k * q, torch.full_like(q, k)
    s = q.clamp(min=1e-24).sqrt()[..., None]                                   # (*q, 1)
    z = torch.cat([s * _U, _Z.expand(*s.shape[:-1], -1)], -1).sort(-1).values  # (*q, 3202)
    density = torch.exp(-0.5 * (z / s) ** 2)                                  # unnormalized
    z.requires_grad_()
    with torch.enable_grad():
        fz = act.fn(z)
        (dfz,) = torch.autograd.grad(fz.sum(), z)
    z = z.detach()
    mass = torch.trapezoid(density, z)
    return (torch.trapezoid(density * fz.detach() ** 2, z) / mass,
            torch.trapezoid(density * dfz ** 2, z) / mass)


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------

@dataclass
class LayerMeasure:
    name: str
    module: nn.Module
    forward_std: float
    forward_rms: float    # sqrt of the mean square: what the formula predicts (std ~ rms for zero-mean w)
    post_std: float
    backward_std: float
    w_sq: float           # empirical E[w^2]
    b_sq: float           # empirical E[b^2]


def _std_rms(t: Tensor) -> Tuple[float, float]:
    """(std, root mean square) over all entries, in float64 (an exploding net overflows float32 squares)."""
    d = t.detach().double()
    ms, mean = float(d.pow(2).mean()), float(d.mean())
    return math.sqrt(max(ms - mean * mean, 0.0)), math.sqrt(ms)


def measure(model: nn.Module, x: Tensor, y: Tensor) -> Tuple[List[LayerMeasure], Tensor, float]:
    """One forward and backward of ``model`` on images ``x`` with labels ``y``; per weight layer the std
    of its output, of that output after the activation, and of the loss gradient w.r.t. the output.
    Returns (layers, input second-moment map E[x_0^2] over the batch, mean square of dL/dlogits)."""
    outputs: Dict[str, Tensor] = {}
    layers = list(init.init_layers(model))

    def keep(name):
        def hook(module, inputs, out):
            out.retain_grad()
            outputs[name] = out
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in layers]
    try:
        model.zero_grad(set_to_none=True)
        logits = model(x)
        F.cross_entropy(logits, y, reduction="sum").backward()
    finally:
        for h in handles:
            h.remove()
    act = model.act.fn
    rows = []
    for name, m in layers:
        out = outputs[name]
        post = act(out.detach()) if name != layers[-1][0] else out.detach()
        std, rms = _std_rms(out)
        rows.append(LayerMeasure(name, m, std, rms, _std_rms(post)[0],
                                 _std_rms(out.grad)[0] if out.grad is not None else math.nan,
                                 _std_rms(m.weight)[1] ** 2,
                                 _std_rms(m.bias)[1] ** 2 if m.bias is not None else 0.0))
    x_sq = x.detach().double().pow(2).mean(0)                          # (C, H, W)
    g_sq = float(outputs[layers[-1][0]].grad.double().pow(2).mean())
    return rows, x_sq, g_sq


def _box(m: Tensor) -> Tensor:
    """Sum over the 3x3 neighbourhood of each position, zero outside: (H, W) -> (H, W)."""
    return F.conv2d(m[None, None], torch.ones(1, 1, 3, 3, dtype=m.dtype), padding=1)[0, 0]


def predict(layers: List[LayerMeasure], w_sq: List[float], act: Activation, x_sq: Tensor,
            g_out_sq: float) -> Tuple[List[float], List[float]]:
    """Predicted std of every layer's output (forward, from the input's E[x^2] map) and of the gradient
    w.r.t. it (backward, from the measured gradient at the logits), with ``w_sq[l]`` = Var(w_l) used.
    Hidden layers are followed by ``act``, the last one (the logits) by nothing."""
    L = len(layers)
    q = x_sq.double()                                  # E[x^2] map of what the next layer reads
    fwd: List[Tensor] = []                             # E[y_l^2] per layer (scalar or (H, W) map)
    for l, (lm, v) in enumerate(zip(layers, w_sq)):
        m = lm.module
        if isinstance(m, nn.Conv2d):
            q2 = q.mean(0) if q.dim() == 3 else q      # mean over channels: (H, W)
            y_sq = v * m.in_channels * _box(q2) + lm.b_sq
        else:
            fan_in = m.in_features
            y_sq = torch.tensor(v * fan_in * float(q.mean()) + lm.b_sq, dtype=torch.float64)
        fwd.append(y_sq)
        q = moments(act, y_sq)[0] if l < L - 1 else y_sq
    g = torch.tensor(g_out_sq, dtype=torch.float64)   # E[(dL/dy_L)^2]
    bwd: List[Tensor] = [g]
    for l in range(L - 1, 0, -1):
        m, v = layers[l].module, w_sq[l]
        if isinstance(m, nn.Conv2d):
            gx = v * m.out_channels * _box(g if g.dim() == 2 else g.expand(fwd[l].shape))
        else:
            gx = torch.tensor(v * m.out_features * float(g.mean()), dtype=torch.float64)
        prev = fwd[l - 1]
        if not isinstance(m, nn.Conv2d) and prev.dim() == 2:
            gx = gx.expand(prev.shape)                 # a flattened conv map feeds a Linear layer
        g = moments(act, prev)[1] * gx
        bwd.insert(0, g)
    return [math.sqrt(float(t.mean())) for t in fwd], [math.sqrt(float(t.mean())) for t in bwd]


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------

@dataclass
class ProbeConfig:
    """One signal-propagation probe; written next to its results as ``config.json``."""
    inits: List[str] = field(default_factory=lambda: list(PROBE_INITS))
    activations: List[str] = field(default_factory=lambda: list(PROBE_ACTIVATIONS))
    width: Optional[int] = None     # units (channels with conv); None = 256 (fully connected), 32 (conv)
    depth: int = 20                 # hidden layers
    conv: bool = False              # 3x3 convolutions, padding 1, instead of fully connected layers
    images: Optional[int] = None    # probe batch; None = 512 (fully connected), 32 (conv: 28x28 maps,
                                    # ~5 s per init x activation x seed on 2 CPU cores at width 32)
    seeds: int = 3                  # weight draws per init x activation (seeds first_seed ...)
    first_seed: int = 0
    bias_init: Union[float, str] = 0.0  # a constant every bias starts at, or a distribution it is drawn from
                                    # (the formula takes E[b^2] as measured on the drawn biases)
    dataset: str = "mnist"
    data_dir: Optional[str] = None

    @property
    def resolved_width(self) -> int:
        return self.width if self.width is not None else (32 if self.conv else 256)

    @property
    def resolved_images(self) -> int:
        return self.images if self.images is not None else (32 if self.conv else 512)


def validate(cfg: ProbeConfig) -> None:
    """Raise ``study.ConfigError`` (one line) for the first bad setting."""
    if not cfg.inits:
        raise study.ConfigError(f"{flag('inits')} needs at least one init")
    if not cfg.activations:
        raise study.ConfigError(f"{flag('activations')} needs at least one activation")
    for spec in cfg.inits:
        try:
            init.parse_spec(spec)
        except ValueError as e:
            raise study.ConfigError(str(e)) from None
    for name in cfg.activations:
        if name not in activation_names():
            raise study.ConfigError(f"unknown activation {name!r}; choose from: {', '.join(activation_names())}")
    study.check_bias_init(cfg.bias_init)
    for name, value in (("width", cfg.resolved_width), ("depth", cfg.depth), ("images", cfg.resolved_images),
                        ("seeds", cfg.seeds)):
        if value < 1:
            raise study.ConfigError(f"{flag(name)} must be >= 1, got {value}")
    check_seeds(cfg.seeds, cfg.first_seed, len(cfg.inits) * len(cfg.activations),
                      f"{len(cfg.inits)} inits x {len(cfg.activations)} activations")
    if cfg.dataset not in data_mod.dataset_names():
        raise study.ConfigError(f"unknown dataset {cfg.dataset!r}; choose from: {', '.join(data_mod.dataset_names())}")
    size, n = data_mod.DATASETS.get(cfg.dataset).train_size, cfg.resolved_images
    if n > size:
        raise study.ConfigError(f"{flag('images', n)} is more than the {size:,} training images of {cfg.dataset}")
    data_dependent = [s for s in cfg.inits if init.parse_spec(s)[0] in init.MODEL_INITIALIZERS]
    if data_dependent and n > size - LSUV_IMAGES:       # probe_batches: its own LSUV_IMAGES others
        raise study.ConfigError(f"{flag('images', n)} leaves fewer than the {LSUV_IMAGES} other images "
                                f"{data_dependent[0]} initializes from (of the {size:,} training images of "
                                f"{cfg.dataset}): at most {size - LSUV_IMAGES:,}")
    for spec in cfg.inits:
        check = getattr(init.MODEL_INITIALIZERS.get(init.parse_spec(spec)[0]), "check_model", None) \
            if init.parse_spec(spec)[0] in init.MODEL_INITIALIZERS else None
        if check is not None:
            try:
                check(build(cfg, cfg.activations[0]))
            except ValueError as e:
                raise study.ConfigError(f"{flag('inits', spec)}: {e}") from None


def build(cfg: ProbeConfig, activation: str, image_shape: Sequence[int] = (1, 28, 28)) -> nn.Module:
    """The probed net for images of ``image_shape`` (C, H, W) with square H = W (MNIST; CIFAR-10 3x32x32)."""
    return models.build("mlp", activation=get_activation(activation), width=cfg.resolved_width,
                        depth=cfg.depth, conv=cfg.conv, in_channels=image_shape[0], image_size=image_shape[-1])


def probe_batches(ds, n: int, extra: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(images, labels) of the probe, and ``extra`` further images for data-dependent inits: the first
    n + extra of a fixed shuffle of the training split, floats in [0, 1], (N, C, H, W)."""
    order = torch.randperm(len(ds.train_images), generator=torch.Generator().manual_seed(PROBE_SUBSET_SEED))
    x = engine.to_float_images(ds.train_images[order[: n + extra]], False, "cpu")
    return x[:n], ds.train_labels[order[:n]].long(), x[n:]


def run_probe(cfg: ProbeConfig, dataset=None, progress: bool = True) -> List[dict]:
    """Every init x activation x seed: one forward/backward of the probe batch. Returns probe.csv rows."""
    from tqdm import tqdm

    validate(cfg)
    ds = dataset if dataset is not None else data_mod.load_dataset(cfg.dataset, cfg.data_dir, quiet=True)
    x, y, extra = probe_batches(ds, cfg.resolved_images, LSUV_IMAGES)
    rows: List[dict] = []
    combos = [(a, s, seed) for a in cfg.activations for s in cfg.inits
              for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds)]
    threads = engine.ThreadGovernor().start()   # the training rule: no more threads than idle cores
    try:
        for act_name, spec, seed in tqdm(combos, desc="probe", disable=not progress, dynamic_ncols=True):
            threads.tick()
            rows += _probe_one(cfg, act_name, spec, seed, x, y, extra)
    except KeyboardInterrupt:
        raise Interrupted(rows, len(combos)) from None
    finally:
        threads.stop()
    return rows


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a probe, with the rows of the combinations probed before it."""

    def __init__(self, rows: List[dict], combinations: int) -> None:
        super().__init__()
        self.rows, self.combinations = rows, combinations


def _probe_one(cfg: ProbeConfig, act_name: str, spec: str, seed: int, x: Tensor, y: Tensor,
               extra: Tensor) -> List[dict]:
    """probe.csv's rows of one init x activation x seed: one forward/backward of the probe batch."""
    rows: List[dict] = []
    act = get_activation(act_name)
    model = build(cfg, act_name, x.shape[1:])
    init.initialize(model, spec, generator=study.init_generator(seed),
                    activation=init_activation_name(act), bias=cfg.bias_init, data=extra)
    layers, x_sq, g_sq = measure(model, x, y)
    theory = [theoretical_second_moment(spec, lm.module.weight.shape, init_activation_name(act))
              for lm in layers]
    w_sq = [t if t is not None else lm.w_sq for t, lm in zip(theory, layers)]
    pred_f, pred_b = predict(layers, w_sq, act, x_sq, g_sq)
    kind = "exact" if exact_activation(act) else "mean-field"
    for l, (lm, v, t, pf, pb) in enumerate(zip(layers, w_sq, theory, pred_f, pred_b), start=1):
        fan_in, fan_out = init.fans(lm.module.weight)
        rows.append({
            "init": spec, "activation": act_name, "seed": seed, "layer": l, "layer_name": lm.name,
            "hidden": l <= cfg.depth, "fan_in": fan_in, "fan_out": fan_out,
            "weight_var": v, "var_source": "formula" if t is not None else "empirical",
            "empirical_weight_var": lm.w_sq,
            "forward_std": lm.forward_std, "post_std": lm.post_std, "backward_std": lm.backward_std,
            "predicted_std": pf, "predicted_backward_std": pb, "prediction": kind,
        })
    return rows


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------

def write_tables(out: Path, cfg: ProbeConfig, rows: List[dict], seconds: float = math.nan,
                 interrupted: Optional[Interrupted] = None) -> None:
    """config.json, meta.json (with how far an interrupted probe got), probe.csv (one row per layer),
    runs.csv."""
    d = asdict(cfg)
    d.update(width=cfg.resolved_width, images=cfg.resolved_images)
    meta = {"seconds": seconds}
    if interrupted is not None:
        meta.update(interrupted=True, combinations=interrupted.combinations,
                    combinations_done=len({(r["init"], r["activation"], r["seed"]) for r in rows}))
    files.write_result(out, "probe", d, {"probe": rows, "runs": probe_report.run_rows(rows)}, meta)


def write_probe(out: Path, cfg: ProbeConfig, rows: List[dict], seconds: float = math.nan,
                interrupted: Optional[Interrupted] = None) -> Path:
    """The tables (:func:`write_tables`), then the report."""
    write_tables(out, cfg, rows, seconds, interrupted)
    return probe_report.write_report(out)
