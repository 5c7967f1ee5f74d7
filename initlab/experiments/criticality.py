"""Order, chaos and trainable depth: the mean-field theory of initialization, computed and measured.

Poole et al. (2016) and Schoenholz et al. (2017) describe a deep net with weights N(0, sigma_w^2/N) and
biases N(0, sigma_b^2) by two maps (:mod:`initlab.init.mean_field`): the length of a signal settles at
q*, and the correlation of two inputs at c* over ``xi_c`` layers, a depth scale that diverges on the
critical line chi_1 = 1 between the ordered and the chaotic phase. Their prediction: a net trains only
if it is no deeper than a few ``xi_c`` (Schoenholz et al. 2017, Fig. 5: about 6 xi_c). Pennington et
al. (2017) add dynamical isometry: at criticality, orthogonal weights keep every singular value of the
input-output Jacobian near 1 for tanh, Gaussian weights do not, and ReLU has no such point
(:mod:`initlab.init.mean_field_inits`).

``initlab criticality`` does, side by side:

- **theory** (:func:`theory_rows`): the critical line sigma_w^2(sigma_b^2) for tanh and ReLU (and the
  experiment's activation), and q*, chi_1, xi_c at every trained sigma_w^2;
- **measured at initialization** (:func:`map_rows`): the length and correlation of two inputs layer
  by layer through finite random nets (mean over seeds), against the maps' predictions, and the depth
  scale fitted to the measured correlations against xi_c; the Jacobian's singular values
  (:func:`isometry_rows`), Gaussian against orthogonal, tanh against ReLU, at criticality;
- **trained** (:func:`plan`): a sigma_w^2 x depth grid of MLPs (every sigma_w^2 of a depth as one
  stack), one epoch of ``steps`` SGD steps, planned as cells on the runner (resume, workers, Ray,
  Ctrl-C), plus Gaussian against orthogonal weights at the critical point, with curves, to see
  whether isometry trains faster.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from initlab import engine, files
from initlab.activations import ACTIVATIONS
from initlab.experiments import study
from initlab.experiments.protocol import Experiment, from_fields
from initlab.init import mean_field as mf
from initlab.init.mean_field_inits import jacobian_singular_values
from initlab.options import flag

SIGMA_W2S = (1.0, 1.3, 2.5, 4.0)     # off criticality for tanh at sigma_b^2 = 0.05: xi_c 3.6 / 7.8 / 11.8 / 7.0
DEPTHS = (10, 30, 60, 100)            # 3 xi_c and 12 xi_c of those fall between them
THEORY_SIGMA_B2S = tuple(round(0.02 * k, 2) for k in range(11))     # 0 .. 0.2
THEORY_ACTIVATIONS = ("tanh", "relu")


@dataclass
class CriticalityConfig:
    """Everything a criticality experiment depends on; written next to its results as ``config.json``."""
    activation: str = "tanh"
    sigma_w2s: List[float] = field(default_factory=lambda: list(SIGMA_W2S))
    critical: bool = True           # also train at the critical sigma_w^2 of sigma_b2 (computed)
    sigma_b2: float = 0.05
    depths: List[int] = field(default_factory=lambda: list(DEPTHS))
    width: int = 128                # units per hidden layer of the trained nets
    seeds: int = 1
    first_seed: int = 0
    optimizer: str = "sgd"          # sgd: Nesterov momentum 0.9
    lr: float = 1e-3
    batch_size: int = 32
    steps: int = 1500               # one epoch over steps x batch_size training images
    isometry_depth: int = 32        # Jacobian spectra, and the Gaussian-against-orthogonal training
    isometry_width: int = 256
    map_width: int = 1024           # finite nets whose lengths and correlations are measured at init
    map_depth: int = 40
    map_seeds: int = 4
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    device: str = "auto"
    workers: int = 0                # training processes; 0 = one per core on the CPU, 1 on a GPU


def critical_point(cfg: CriticalityConfig) -> float:
    """The critical sigma_w^2 at the experiment's sigma_b^2 (rounded to 4 digits: a setting)."""
    return round(mf.critical_sigma_w2(cfg.sigma_b2, cfg.activation), 4)


def sigma_w2_list(cfg: CriticalityConfig) -> List[float]:
    """The trained sigma_w^2 values, the critical one included when asked, in increasing order."""
    values = set(cfg.sigma_w2s) | ({critical_point(cfg)} if cfg.critical else set())
    return sorted(values)


def gaussian_spec(sigma_w2: float) -> str:
    """The init spec of W ~ N(0, sigma_w^2 / fan_in)."""
    return f"variance_scaling:scale={sigma_w2:g},mode=fan_in,distribution=normal"


def orthogonal_spec(sigma_w2: float) -> str:
    """The init spec of W = sqrt(sigma_w^2) Q, Q Haar-orthogonal."""
    return f"orthogonal:gain={math.sqrt(sigma_w2):.6g}"


def validate(cfg: CriticalityConfig) -> None:
    """Raise ConfigError (one line) for the first bad setting, before any work."""
    if cfg.activation not in ACTIVATIONS:
        raise study.ConfigError(f"unknown activation {cfg.activation!r}; choose from: "
                                f"{', '.join(ACTIVATIONS.names())}")
    checks = [
        (bool(cfg.sigma_w2s) or cfg.critical, f"{flag('sigma_w2s')} needs at least one value (or {flag('critical')})"),
        (all(math.isfinite(s) and 0 < s <= 100 for s in cfg.sigma_w2s), f"{flag('sigma_w2s')} must be in (0, 100]"),
        (math.isfinite(cfg.sigma_b2) and 0 <= cfg.sigma_b2 <= 10, f"{flag('sigma_b2')} must be in [0, 10]"),
        (bool(cfg.depths) and all(1 <= d <= 1000 for d in cfg.depths), f"{flag('depths')} must be in 1..1000"),
        (1 <= cfg.width <= 8192, f"{flag('width')} must be in 1..8192"),
        (1 <= cfg.steps <= 1_000_000, f"{flag('steps')} must be in 1..1000000"),
        (1 <= cfg.isometry_depth <= 1000 and 1 <= cfg.isometry_width <= 4096,
         f"{flag('isometry_depth')} must be in 1..1000 and {flag('isometry_width')} in 1..4096"),
        (1 <= cfg.map_width <= 8192 and 1 <= cfg.map_depth <= 1000 and 1 <= cfg.map_seeds <= 100,
         f"{flag('map_width')}, {flag('map_depth')}, {flag('map_seeds')} must be >= 1 (at most 8192, 1000, 100)"),
    ]
    for ok, message in checks:
        if not ok:
            raise study.ConfigError(message)
    if cfg.critical:
        try:
            critical_point(cfg)
        except ValueError as e:
            raise study.ConfigError(f"{flag('critical')}: {cfg.activation} at sigma_b^2 = {cfg.sigma_b2}: "
                                    f"{e}") from None
    for group in plan(cfg):
        study.validate(group)


def _study(cfg: CriticalityConfig, inits: List[str], depth: int, record: bool) -> study.StudyConfig:
    bias = f"normal:std={math.sqrt(cfg.sigma_b2):.6g}" if cfg.sigma_b2 > 0 else 0.0
    return study.StudyConfig(
        inits=inits, seeds=cfg.seeds, first_seed=cfg.first_seed, model="mlp", activation=cfg.activation,
        width=cfg.width, depth=depth, bias_init=bias, dataset=cfg.dataset, data_dir=cfg.data_dir,
        device=cfg.device, workers=cfg.workers,
        train=engine.TrainConfig(epochs=1, lr=cfg.lr, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                                 train_size=cfg.steps * cfg.batch_size, record=record))


def plan(cfg: CriticalityConfig) -> List[study.StudyConfig]:
    """Per depth, deepest first, one stack of every sigma_w^2 (final accuracy only); then, with the
    critical point, Gaussian against orthogonal weights there at ``isometry_depth``, with curves."""
    specs = [gaussian_spec(s) for s in sigma_w2_list(cfg)]
    groups = [_study(cfg, specs, d, record=False) for d in sorted(cfg.depths, reverse=True)]
    if cfg.critical:
        crit = critical_point(cfg)
        groups.append(_study(cfg, [gaussian_spec(crit), orthogonal_spec(crit)], cfg.isometry_depth, record=True))
    return groups


def to_dict(cfg: CriticalityConfig) -> dict:
    from dataclasses import asdict

    return {**asdict(cfg), "sigma_w2_trained": sigma_w2_list(cfg),
            "sigma_w2_critical": critical_point(cfg) if cfg.critical else None}


def collect(config: dict, runs: List[dict]) -> Dict[str, List[dict]]:
    """runs.csv: one row per finished run of the grid (sigma_w2, sigma_b2, depth, seed, test_acc, xi_c,
    ...); isometry_runs.csv and isometry_curves.csv: the Gaussian and orthogonal runs at criticality."""
    cfg = from_fields(CriticalityConfig, config)
    n_grid = len(cfg.depths)
    by_spec = {gaussian_spec(s): s for s in sigma_w2_list(cfg)}
    theory = {s: mf.analyze(s, cfg.sigma_b2, cfg.activation) for s in by_spec.values()}
    rows, iso_rows, iso_curves = [], [], []
    for run in runs:
        r, c = run["row"], run["config"]
        if any(g < n_grid for g in run["groups"]):
            s = by_spec[run["init"]]
            rows.append({"sigma_w2": s, "sigma_b2": cfg.sigma_b2, "depth": c["depth"], "seed": r["seed"],
                         "test_acc": r["test_acc"], "xi_c": float(theory[s].xi_c), "chi_1": float(theory[s].chi_1),
                         "phase": mf.phase(s, cfg.sigma_b2, cfg.activation), "diverged": r["diverged"],
                         "test_loss": r["test_loss"], "steps": r["steps"], "init": run["init"],
                         "train_seconds": r["train_seconds"]})
        if any(g >= n_grid for g in run["groups"]):
            weights = "orthogonal" if run["init"].startswith("orthogonal") else "gaussian"
            iso_rows.append({"weights": weights, "depth": c["depth"], "seed": r["seed"], "test_acc": r["test_acc"],
                             "steps_to_90": r.get("steps_to_90"), "diverged": r["diverged"], "init": run["init"]})
            iso_curves += [{"weights": weights, "seed": r["seed"], "step": x["step"],
                            "heldout_acc": x["heldout_acc"], "train_loss": x.get("train_loss")}
                           for x in run["tables"].get("curves", [])]
    rows.sort(key=lambda x: (x["sigma_w2"], x["depth"], x["seed"]))
    return {"isometry_runs": iso_rows, "isometry_curves": iso_curves, "runs": rows}


# --------------------------------------------------------------------------------------------------
# Computed and measured at initialization (no training; written before the runner trains)
# --------------------------------------------------------------------------------------------------

def theory_rows(cfg: CriticalityConfig) -> List[dict]:
    """theory.csv: the critical sigma_w^2 at every sigma_b^2 in 0..0.2 (and the experiment's) for tanh,
    ReLU and the experiment's activation, and the full picture (q*, c*, chi_1, xi_q, xi_c) at the trained points."""
    rows = []
    for act in dict.fromkeys(THEORY_ACTIVATIONS + (cfg.activation,)):
        for b in sorted(set(THEORY_SIGMA_B2S) | ({cfg.sigma_b2} if act == cfg.activation else set())):
            try:
                crit = mf.critical_sigma_w2(b, act)
            except ValueError:
                crit = math.nan
            rows.append({"kind": "critical_line", "activation": act, "sigma_b2": b,
                         "sigma_w2_critical": float(crit)})
    for s in sigma_w2_list(cfg):
        m = mf.analyze(s, cfg.sigma_b2, cfg.activation)
        rows.append({"kind": "point", "activation": cfg.activation, "sigma_b2": cfg.sigma_b2, "sigma_w2": s,
                     "q_star": float(m.q_star), "c_star": float(m.c_star), "chi_1": float(m.chi_1),
                     "xi_q": float(m.xi_q), "xi_c": float(m.xi_c),
                     "phase": mf.phase(s, cfg.sigma_b2, cfg.activation)})
    return rows


def start_correlation(c_star: float) -> float:
    """The correlation of the two inputs whose correlation map is measured: 0.5 where they converge
    to c* = 1 (ordered, critical), 0.99 where they decorrelate towards c* < 1 (chaotic): a long way to
    go either way, so the depth scale can be fitted."""
    return 0.5 if c_star > 0.9 else 0.99


def map_rows(cfg: CriticalityConfig) -> List[dict]:
    """maps.csv: per sigma_w^2 and layer, the length q^l of a signal and the correlation c^l of two
    inputs through random nets of ``map_width`` units (mean over ``map_seeds`` nets), next to the
    maps' predictions from the same start (q^0 = 1, c^0 from :func:`start_correlation`)."""
    fn = ACTIVATIONS.get(cfg.activation).fn
    rows = []
    for s in sigma_w2_list(cfg):
        c0 = start_correlation(mf.analyze(s, cfg.sigma_b2, cfg.activation).c_star)
        q_pred, c_pred = 1.0, c0
        measured = np.zeros((cfg.map_seeds, cfg.map_depth + 1, 2))
        for k in range(cfg.map_seeds):
            g = torch.Generator().manual_seed(cfg.first_seed + k)
            n = cfg.map_width
            z1, z2 = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
            h = torch.stack([z1, c0 * z1 + math.sqrt(1 - c0 ** 2) * z2])            # (2, N): q^0 = 1, c^0 = c0
            for layer in range(cfg.map_depth + 1):
                q = (h ** 2).mean(dim=1)
                measured[k, layer] = [q[0].item(), ((h[0] * h[1]).mean() / q.prod().sqrt()).item()]
                w = torch.randn(n, n, generator=g, dtype=torch.float64) * math.sqrt(s / n)
                b = torch.randn(n, generator=g, dtype=torch.float64) * math.sqrt(cfg.sigma_b2)
                h = fn(h) @ w.T + b
        mean = measured.mean(axis=0)
        for layer in range(cfg.map_depth + 1):
            rows.append({"sigma_w2": s, "layer": layer, "q": float(mean[layer, 0]), "q_predicted": float(q_pred),
                         "c": float(mean[layer, 1]), "c_predicted": float(c_pred)})
            q_next = mf.length_map(q_pred, s, cfg.sigma_b2, cfg.activation)
            c_pred = mf.correlation_map(c_pred, q_pred, s, cfg.sigma_b2, cfg.activation)
            q_pred = q_next
    return rows


def fitted_depth_scale(layers: Sequence[int], c: Sequence[float], c_star: float, floor: float) -> float:
    """The depth scale of measured correlations: -1 / slope of ln|c^l - c*| against l, a least-squares
    line over the asymptotic part of the approach -- from the first layer where |c^l - c*| is under
    half its start (xi_c is the rate near c*, not near the unstable c = 1 a chaotic net starts from) to
    the layer before it first falls under ``floor`` (the finite nets' noise); nan with fewer than 3
    such layers."""
    xs, ys = [], []
    start = abs(c[0] - c_star)
    for layer, value in zip(layers, c):
        gap = abs(value - c_star)
        if gap < floor:
            break
        if gap <= start / 2:
            xs.append(layer)
            ys.append(math.log(gap))
    if len(xs) < 3:
        return math.nan
    slope = float(np.polyfit(xs, ys, 1)[0])
    return -1.0 / slope if slope < 0 else math.inf


def depth_scale_rows(cfg: CriticalityConfig, maps: List[dict]) -> List[dict]:
    """depth_scales.csv: per sigma_w^2, xi_c from the theory and fitted to the measured correlations."""
    out = []
    for s in sigma_w2_list(cfg):
        m = mf.analyze(s, cfg.sigma_b2, cfg.activation)
        rows = [r for r in maps if r["sigma_w2"] == s]
        floor = 2.0 / math.sqrt(cfg.map_width * cfg.map_seeds)     # ~2 std of a measured correlation
        out.append({"sigma_w2": s, "xi_c": float(m.xi_c), "c_star": float(m.c_star),
                    "xi_c_fitted": fitted_depth_scale([r["layer"] for r in rows], [r["c"] for r in rows],
                                                      m.c_star, floor)})
    return out


ISOMETRY_CASES = (("tanh", "gaussian"), ("tanh", "orthogonal"), ("relu", "gaussian"), ("relu", "orthogonal"))


def log_spread(singular_values: np.ndarray) -> float:
    """The std of ln(s) over the singular values float64 resolves (s > s_max N eps, numpy's rank cut)."""
    s = np.asarray(singular_values)
    kept = s[s > s.max() * len(s) * np.finfo(np.float64).eps]
    return float(np.std(np.log(kept)))


def isometry_rows(cfg: CriticalityConfig) -> List[dict]:
    """isometry.csv: the input-output Jacobian at initialization of an ``isometry_depth``-layer net of
    ``isometry_width`` units at criticality, Gaussian against orthogonal weights, tanh (at sigma_b^2 =
    1e-4, where its critical point is nearest isometry) against ReLU (sigma_w^2 = 2, sigma_b^2 = 0):
    the spread of the log singular values and a histogram of them (20 bins over their range)."""
    rows = []
    for act, weights in ISOMETRY_CASES:
        b = 1e-4 if act == "tanh" else 0.0
        s2 = mf.critical_sigma_w2(b, act)
        sv = jacobian_singular_values(cfg.isometry_depth, cfg.isometry_width, s2, b, act, weights,
                                      seed=cfg.first_seed)
        kept = sv[sv > sv.max() * len(sv) * np.finfo(np.float64).eps]
        rows.append({"activation": act, "weights": weights, "sigma_w2": float(s2), "sigma_b2": b,
                     "depth": cfg.isometry_depth, "width": cfg.isometry_width, "log_sv_std": log_spread(sv),
                     "log_sv_mean": float(np.mean(np.log(kept))), "resolved": int(len(kept)),
                     "max_sv": float(sv.max()), "log_sv": " ".join(f"{v:.4g}" for v in np.log(kept))})
    return rows


def prepare(cfg: CriticalityConfig, out: Path, dataset=None, resume: bool = False, progress: bool = True) -> None:
    """theory.csv, maps.csv, depth_scales.csv and isometry.csv: everything computed or measured without
    training (about a minute), written before the runner trains."""
    if progress:
        print("theory, and measurements at initialization (no training) ...", file=sys.stderr, flush=True)
    maps = map_rows(cfg)
    for name, rows in (("theory", theory_rows(cfg)), ("maps", maps), ("depth_scales", depth_scale_rows(cfg, maps)),
                       ("isometry", isometry_rows(cfg))):
        files.atomic_write_text(Path(out) / f"{name}.csv", files.rows_to_csv(rows))


EXPERIMENT = Experiment(
    "criticality", config=CriticalityConfig, plan=plan, collect=collect, prepare=prepare, validate=validate,
    to_dict=to_dict,
    small={"depths": [2, 3], "sigma_w2s": [1.0, 4.0], "width": 16, "steps": 20, "map_width": 32, "map_depth": 4,
           "map_seeds": 1, "isometry_depth": 4, "isometry_width": 16, "seeds": 2},
    help="order, chaos and dynamical isometry: the mean-field theory of initialization next to "
         "measurement, and how deep each sigma_w^2 trains; resumable",
    description="Compute the critical line, lengths, correlations and depth scales of the mean-field theory "
                "(Poole et al. 2016, Schoenholz et al. 2017), measure them on random nets, compare "
                "Jacobian spectra of Gaussian and orthogonal weights at criticality (Pennington et al. "
                "2017), and train a sigma_w^2 x depth grid of MLPs.")
