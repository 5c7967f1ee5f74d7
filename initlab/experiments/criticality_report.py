"""The criticality report: theory next to measurement, figures and only the sentences the data supports.

Everything here reads the result folder alone (config.json, meta.json, theory.csv, maps.csv,
depth_scales.csv, isometry.csv, runs.csv, isometry_runs.csv, isometry_curves.csv), so ``initlab report``
rebuilds it at any time.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from initlab import files
from initlab.document import Document, figure, grids, save, settings_line, status_note
from initlab.init import mean_field as mf
from initlab.init.mean_field_inits import init_sigma_w2
from initlab.seeds import Seeds, count, mean_std, over_seeds

TRAINS = 0.50      # "trains": mean final test accuracy above this
STALLS = 0.20      # "stays near chance": below this (chance is 10 %)
NEAR = 3           # depth <= NEAR xi_c should train ...
FAR = 12           # ... depth >= FAR xi_c should not (Schoenholz et al. 2017 put the edge near 6 xi_c)
FINITE_XI = 30     # a sigma_w^2 counts as off criticality where xi_c <= this

Table = Tuple[List[str], List[List[str]]]


def accuracy(runs: Sequence[dict]) -> Dict[Tuple[float, int], Seeds]:
    """{(sigma_w2, depth): final test accuracy over seeds}; a diverged run is counted, not averaged."""
    groups: Dict[Tuple[float, int], List[dict]] = {}
    for r in runs:
        groups.setdefault((r["sigma_w2"], r["depth"]), []).append(r)
    return {k: over_seeds([r["test_acc"] for r in rs], [r["diverged"] for r in rs]) for k, rs in groups.items()}


def trained(s: Seeds) -> bool:
    """Every seed finite and their mean above ``TRAINS``."""
    return not s.diverged and s.mean > TRAINS


def stalled(s: Seeds) -> bool:
    """Every seed diverged, or the finite seeds' mean below ``STALLS``: not trained either way."""
    return not s.n or s.mean < STALLS


def _acc(s: Seeds) -> str:
    """'54.2 %', with the diverged seeds counted: '54.2 %, 1/3 diverged', or 'diverged'."""
    if not s.n:
        return "diverged"
    return f"{100 * s.mean:.1f} %" + (f", {s.diverged}/{s.runs} diverged" if s.diverged else "")


def classic_inits(activation: str) -> List[Tuple[str, float]]:
    """(name, sigma_w^2) of the classic inits on a square layer, as initlab's registry draws them:
    xavier and lecun_normal 1, kaiming 2 (a = 0, whatever the activation), orthogonal its default gain^2."""
    return [("xavier", 1.0), ("lecun_normal", 1.0), ("kaiming", 2.0),
            ("orthogonal", init_sigma_w2("orthogonal", activation))]


def _xi_c(sigma_w2: float, sigma_b2: float, activation: str) -> float:
    """xi_c; in the ordered phase (c* = 1, so chi_c = chi_1) from chi_1 alone, which is 1-D and cheap."""
    chi = mf.chi_1(sigma_w2, sigma_b2, activation)
    return mf.depth_scale(chi) if chi < 1 else mf.analyze(sigma_w2, sigma_b2, activation).xi_c


def _fmt_xi(xi: float) -> str:
    return "inf" if not math.isfinite(xi) or xi > 1e4 else f"{xi:.1f}"


def grid_table(runs: Sequence[dict], points: Sequence[dict], depths: Sequence[int]) -> Table:
    """sigma_w^2 rows, depth columns: mean test accuracy (%) over seeds, and xi_c and 3/12 xi_c."""
    acc = accuracy(runs)
    xi = {p["sigma_w2"]: p["xi_c"] for p in points}
    head = ["sigma_w^2", "xi_c", "phase"] + [f"depth {d}" for d in depths]
    body = []
    for s in sorted(xi):
        phase = next(p["phase"] for p in points if p["sigma_w2"] == s)
        cells = []
        for d in depths:
            cells.append(mean_std(acc[(s, d)], digits=1) if (s, d) in acc else "")
        body.append([f"{s:g}", _fmt_xi(xi[s]), phase] + cells)
    return head, body


def trained_sentences(runs: Sequence[dict], points: Sequence[dict], cfg: dict) -> List[str]:
    """What the trained grid says about the depth-scale prediction, from the finished runs only."""
    acc = accuracy(runs)
    if not acc:
        return []
    xi = {p["sigma_w2"]: p["xi_c"] for p in points}
    out = []
    near = [(s, d) for (s, d) in acc if xi[s] <= FINITE_XI and d <= NEAR * xi[s]]
    far = [(s, d) for (s, d) in acc if d >= FAR * xi[s]]
    near_ok = [k for k in near if trained(acc[k])]
    far_ok = [k for k in far if stalled(acc[k])]
    if near:
        misses = [f"sigma_w^2 {s:g} at depth {d} ({_acc(acc[(s, d)])})"
                  for (s, d) in near if (s, d) not in near_ok]
        out.append(f"Off criticality (xi_c <= {FINITE_XI}), {len(near_ok)} of {len(near)} nets no deeper than "
                   f"{NEAR} xi_c trained past {100 * TRAINS:.0f} %" + (f"; not: {', '.join(misses)}" if misses else "")
                   + ".")
    if far:
        misses = [f"sigma_w^2 {s:g} at depth {d} ({_acc(acc[(s, d)])})"
                  for (s, d) in far if (s, d) not in far_ok]
        gone = sum(not acc[k].n for k in far_ok)
        out.append(f"{len(far_ok)} of {len(far)} nets at least {FAR} xi_c deep stayed below "
                   f"{100 * STALLS:.0f} % (chance is 10 %)" + (f", {gone} of them by diverging" if gone else "")
                   + (f"; not: {', '.join(misses)}" if misses else "") + ".")
    crit = cfg.get("sigma_w2_critical")
    deepest = {}
    for s in xi:
        ok = [d for (s2, d), a in acc.items() if s2 == s and trained(a)]
        deepest[s] = max(ok) if ok else 0
    if crit is not None and crit in deepest:
        others = {s: d for s, d in deepest.items() if s != crit}
        best_other = max(others.values()) if others else 0
        verb = "deeper than" if deepest[crit] > best_other else "as deep as" if deepest[crit] == best_other \
            else "less deep than"
        out.append(f"At the critical sigma_w^2 = {crit:g} the deepest net that trained past "
                   f"{100 * TRAINS:.0f} % had {deepest[crit]} layers, {verb} any other sigma_w^2 "
                   f"(best {best_other}).")
        failed = sorted(d for (s, d), a in acc.items() if s == crit and not trained(a))
        if failed:
            out.append(f"At criticality xi_c is infinite in theory, yet {failed[0]} layers did not train in "
                       f"{cfg.get('steps')} steps ({_acc(acc[(crit, failed[0])])}): "
                       f"a finite width ({cfg.get('width')} units) and a finite budget of steps set the "
                       f"limit there, not the depth scale.")
    return out


def theory_sentences(theory: Sequence[dict], depth_scales: Sequence[dict], maps: Sequence[dict],
                     cfg: dict) -> List[str]:
    out = []
    act, b = cfg["activation"], cfg["sigma_b2"]
    line = [r for r in theory if r["kind"] == "critical_line"]
    at = [r for r in line if r["activation"] == act and abs(r["sigma_b2"] - b) < 1e-9]
    crit = cfg.get("sigma_w2_critical") or (at[0]["sigma_w2_critical"] if at else None)
    if crit is not None:
        out.append(f"{act} at sigma_b^2 = {b:g}: chi_1 = 1 (order to chaos) at sigma_w^2 = {crit:.4g}.")
    relu = [r["sigma_w2_critical"] for r in line if r["activation"] == "relu"]
    if relu and max(relu) - min(relu) < 1e-6:
        out.append(f"ReLU: critical at sigma_w^2 = {relu[0]:g} for every sigma_b^2 from "
                   f"{min(r['sigma_b2'] for r in line):g} to {max(r['sigma_b2'] for r in line):g} "
                   f"(Kaiming's 2/fan_in; with a bias the length then grows without bound).")
    places = [f"{name} (sigma_w^2 = {s:.3g}): {mf.phase(s, 0.0, act)}" for name, s in classic_inits(act)]
    out.append(f"Where the classic inits stand for {act} with zero biases: " + "; ".join(places) + ".")
    if maps:
        err_q = max(abs(r["q"] - r["q_predicted"]) / r["q_predicted"] for r in maps if r["q_predicted"] > 0)
        err_c = max(abs(r["c"] - r["c_predicted"]) for r in maps)
        out.append(f"Measured on nets of {cfg['map_width']} units ({cfg['map_seeds']} seeds, {cfg['map_depth']} "
                   f"layers), the length of a signal was within {100 * err_q:.0f} % of the length map at every "
                   f"layer, and the correlation of two inputs within {err_c:.3f} of the correlation map.")
    fits = [f"sigma_w^2 {r['sigma_w2']:g}: {_fmt_xi(r['xi_c_fitted'])} measured, {_fmt_xi(r['xi_c'])} predicted"
            for r in depth_scales if r["xi_c_fitted"] is not None and math.isfinite(r["xi_c_fitted"])]
    if fits:
        out.append("Depth scale of the correlations, fitted to the measured maps against xi_c: "
                   + "; ".join(fits) + ".")
    return out


def isometry_sentences(iso: Sequence[dict], iso_runs: Sequence[dict], cfg: dict) -> List[str]:
    out = []
    spread = {(r["activation"], r["weights"]): r["log_sv_std"] for r in iso}
    for act in ("tanh", "relu"):
        g, o = spread.get((act, "gaussian")), spread.get((act, "orthogonal"))
        if g is not None and o is not None:
            out.append(f"{act} at criticality, {cfg['isometry_depth']} layers of {cfg['isometry_width']}: the "
                       f"std of the log singular values of the input-output Jacobian is {g:.2f} with Gaussian "
                       f"and {o:.2f} with orthogonal weights ({g / o:.1f}x)"
                       + (": orthogonal weights give a near-isometry" if g / o >= 5 else
                          ": orthogonal weights do not make it an isometry") + ".")
    by = {}
    for r in iso_runs:
        by.setdefault(r["weights"], []).append(r)
    if len(by) == 2:
        acc = {w: over_seeds([r["test_acc"] for r in rs], [r.get("diverged") for r in rs]) for w, rs in by.items()}
        to90 = {w: [r["steps_to_90"] for r in rs] for w, rs in by.items()}
        reach = {w: (statistics.fmean(v) if all(x is not None for x in v) else None) for w, v in to90.items()}
        parts = [f"{w} {_acc(acc[w])} final" + (f", 90 % held-out after {reach[w]:.0f} steps"
                                                      if reach[w] is not None else ", never 90 % held-out")
                 for w in ("gaussian", "orthogonal")]
        faster = [w for w in ("gaussian", "orthogonal") if reach[w] is not None]
        verdict = ""
        if len(faster) == 2 and reach["orthogonal"] != reach["gaussian"]:
            verdict = (" -- the isometric one trained faster" if reach["orthogonal"] < reach["gaussian"]
                       else " -- the isometric one did not train faster")
        elif faster == ["orthogonal"]:
            verdict = " -- only the isometric one reached 90 %"
        out.append(f"Trained at criticality ({cfg['isometry_depth']} layers of {cfg['width']}, "
                   f"{count(len(by['gaussian']), 'seed')}): " + "; ".join(parts) + verdict + ".")
    return out


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------

def plot_phase(theory: Sequence[dict], cfg: dict, path: Path) -> Path:
    """The (sigma_w^2, sigma_b^2) plane for the activation: xi_c as colour, the critical line, and the
    classic inits and the trained points placed on it."""
    import numpy as np

    act = cfg["activation"]
    ws = np.linspace(0.5, 4.5, 13)      # (xi_c in the chaotic phase costs a 2-D fixed point: ~0.1 s a point)
    bs = np.linspace(0.0, 0.2, 5)
    xi = np.array([[min(_xi_c(w, b, act), 200.0) for w in ws] for b in bs])
    fig, axes = figure(1, 1, 7.2, 4.4)
    ax = axes[0][0]
    im = ax.pcolormesh(ws, bs, np.log10(np.maximum(xi, 1e-3)), shading="gouraud", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log10 xi_c (depth scale of correlations, capped at 200)")
    cs = ax.contour(ws, bs, xi, levels=[3, 10, 30], colors="white", linewidths=0.8)
    ax.clabel(cs, fmt=lambda v: f"xi_c={v:g}", fontsize=7)
    line = sorted((r["sigma_b2"], r["sigma_w2_critical"]) for r in theory
                  if r["kind"] == "critical_line" and r["activation"] == act)
    ax.plot([w for _, w in line], [b for b, _ in line], color="crimson", lw=2, label="critical line (chi_1 = 1)")
    for (name, s), marker in zip(classic_inits(act), ("o", "D", "s", "^")):
        ax.plot([s], [0.0], marker, color="white", mec="black", ms=9, clip_on=False, label=f"{name} ({s:.3g})")
    trained = cfg.get("sigma_w2_trained", [])
    ax.plot(trained, [cfg["sigma_b2"]] * len(trained), "x", color="orange", ms=8, mew=2, label="trained here")
    ax.set(xlabel="sigma_w^2", ylabel="sigma_b^2", title=f"{act}: ordered (left) and chaotic (right) phases")
    ax.legend(fontsize=7, loc="upper right")
    return save(fig, path)


def plot_maps(maps: Sequence[dict], path: Path) -> Optional[Path]:
    """Length and correlation per layer: measured (markers) against the maps (lines), per sigma_w^2."""
    if not maps:
        return None
    import matplotlib

    fig, axes = figure(1, 2, 12, 4.2)
    a, b = axes[0]
    sigmas = sorted({r["sigma_w2"] for r in maps})
    cmap = matplotlib.colormaps["plasma"]
    for k, s in enumerate(sigmas):
        rows = [r for r in maps if r["sigma_w2"] == s]
        colour = cmap(k / max(1, len(sigmas)))
        layers = [r["layer"] for r in rows]
        a.plot(layers, [r["q_predicted"] for r in rows], color=colour, lw=1.4, label=f"sigma_w^2 {s:g}")
        a.plot(layers, [r["q"] for r in rows], "o", color=colour, ms=3)
        b.plot(layers, [r["c_predicted"] for r in rows], color=colour, lw=1.4, label=f"sigma_w^2 {s:g}")
        b.plot(layers, [r["c"] for r in rows], "o", color=colour, ms=3)
    a.set(title="Length q^l (line: length map, dots: measured)", xlabel="layer", ylabel="q")
    b.set(title="Correlation c^l of two inputs (line: map, dots: measured)", xlabel="layer", ylabel="c")
    grids(axes)
    a.legend(fontsize=7)
    return save(fig, path)


def plot_depth(runs: Sequence[dict], cfg: dict, path: Path) -> Optional[Path]:
    """Trainable depth (Schoenholz et al. 2017, Fig. 5): test accuracy over sigma_w^2 x depth, with
    3, 6 and 12 xi_c drawn over it."""
    acc = accuracy(runs)
    if not acc:
        return None
    import numpy as np

    sigmas = sorted({s for s, _ in acc})
    depths = sorted({d for _, d in acc})
    grid = np.full((len(depths), len(sigmas)), np.nan)
    for (s, d), a in acc.items():
        grid[depths.index(d), sigmas.index(s)] = a.mean
    fig, axes = figure(1, 1, 7.2, 4.4, rect=(0, 0.07, 1, 1))
    ax = axes[0][0]
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1,
                   extent=(-0.5, len(sigmas) - 0.5, -0.5, len(depths) - 0.5))
    fig.colorbar(im, ax=ax, label="final test accuracy")
    for i, d in enumerate(depths):
        for j, s in enumerate(sigmas):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < 0.6 else "black")
            elif (s, d) in acc:
                ax.text(j, i, "div", ha="center", va="center", fontsize=7, color="gray")
    fine = np.linspace(min(sigmas), max(sigmas), 30)
    xs = np.interp(fine, sigmas, range(len(sigmas)))
    xi = np.array([_xi_c(s, cfg["sigma_b2"], cfg["activation"]) for s in fine])
    for mult, style in ((NEAR, ":"), (6, "-"), (FAR, "--")):
        ys = np.interp(mult * xi, depths, range(len(depths)), left=-1, right=len(depths))
        ax.plot(xs, ys, style, color="cyan", lw=1.3, label=f"{mult} xi_c")
    ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set_ylim(-0.5, len(depths) - 0.5)
    ax.set(xlabel="sigma_w^2", ylabel="hidden layers", title=f"Trainable depth ({cfg['activation']}, sigma_b^2 "
           f"{cfg['sigma_b2']:g}, {cfg['steps']} steps)")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=3, frameon=False)
    return save(fig, path)


def plot_isometry(iso: Sequence[dict], curves: Sequence[dict], path: Path) -> Optional[Path]:
    """Histograms of log singular values (Gaussian against orthogonal, tanh and ReLU), and the held-out
    accuracy of the two trained at criticality."""
    if not iso:
        return None
    fig, grid = figure(1, 3, 15, 4.0)
    axes = grid[0]
    for ax, act in zip(axes, ("tanh", "relu")):
        for r in iso:
            if r["activation"] == act:
                values = [float(v) for v in str(r["log_sv"]).split()]
                ax.hist(values, bins=30, alpha=0.6, label=f"{r['weights']} (std {r['log_sv_std']:.2f})")
        ax.set(title=f"{act} at criticality: ln(singular value) of the Jacobian", xlabel="ln s", ylabel="count")
        ax.legend(fontsize=7)
    ax = axes[2]
    for weights in ("gaussian", "orthogonal"):
        rows = [c for c in curves if c["weights"] == weights]
        for seed in sorted({c["seed"] for c in rows}):
            pts = [c for c in rows if c["seed"] == seed]
            ax.plot([c["step"] for c in pts], [c["heldout_acc"] for c in pts],
                    color="tab:blue" if weights == "gaussian" else "tab:orange",
                    label=weights if seed == min(c["seed"] for c in rows) else None)
    if curves:
        ax.set(title="Trained at criticality: held-out accuracy", xlabel="step", ylim=(0, 1))
        ax.legend(fontsize=7)
        grids(ax)
    else:
        ax.set_axis_off()
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------------------

def _load(out: Path):
    out = Path(out)
    cfg, meta = files.read_json(out / "config.json"), files.read_json(out / "meta.json")
    tables = {n: files.read_table(out, n) for n in ("theory", "maps", "depth_scales", "isometry", "runs",
                                                   "isometry_runs", "isometry_curves")}
    return cfg, meta, tables


def describe(cfg: dict) -> str:
    return (f"{cfg['activation']} MLPs of {cfg['width']} units, weights N(0, sigma_w^2/fan_in), biases "
            f"N(0, {cfg['sigma_b2']:g}), {cfg['optimizer']} lr {cfg['lr']:g}, batch {cfg['batch_size']}, "
            f"{cfg['steps']} steps on {cfg['dataset']}, test accuracy on the full test split; "
            f"{count(cfg['seeds'], 'seed')}")


def summary_tables(out: Path) -> List[Table]:
    cfg, _, t = _load(out)
    points = [r for r in t["theory"] if r["kind"] == "point"]
    tables = [grid_table(t["runs"], points, sorted(cfg["depths"]))]
    if t["isometry"]:
        tables.append((["activation", "weights", "sigma_w^2", "std of ln(singular values)"],
                       [[r["activation"], r["weights"], f"{r['sigma_w2']:.4g}", f"{r['log_sv_std']:.2f}"]
                        for r in t["isometry"]]))
    return tables


def summary_table(out: Path) -> Table:
    return summary_tables(out)[0]


def observations(out: Path) -> List[str]:
    cfg, _, t = _load(out)
    points = [r for r in t["theory"] if r["kind"] == "point"]
    return (theory_sentences(t["theory"], t["depth_scales"], t["maps"], cfg)
            + trained_sentences(t["runs"], points, cfg)
            + isometry_sentences(t["isometry"], t["isometry_runs"], cfg))


def write_report(out: Path) -> Path:
    """phase.png, maps.png, depth.png, isometry.png, report.md and a self-contained report.html."""
    out = Path(out)
    cfg, meta, t = _load(out)
    points = [r for r in t["theory"] if r["kind"] == "point"]
    doc = Document.report("initlab criticality: order, chaos and trainable depth", settings_line(describe(cfg), meta),
                          meta, status_note(meta, "criticality", out))
    doc.heading("What theory and measurement say").bullets(observations(out))
    doc.heading("Trained: final test accuracy (%) by sigma_w^2 and depth")
    doc.paragraph(f"Mean ± std over seeds of the finished runs; xi_c from the mean-field theory at sigma_b^2 = "
                  f"{cfg['sigma_b2']:g}; '(k/n diverged)' = k of n seeds' loss became non-finite, left out of "
                  f"the mean (not counted as 0); 'diverged' = every seed's did.")
    doc.table(*grid_table(t["runs"], points, sorted(cfg["depths"])))
    doc.heading("Theory at the trained points").table(
        ["sigma_w^2", "q*", "c*", "chi_1", "xi_q", "xi_c", "phase"],
        [[f"{p['sigma_w2']:g}", f"{p['q_star']:.4g}", f"{p['c_star']:.4g}", f"{p['chi_1']:.4f}",
          _fmt_xi(p["xi_q"]), _fmt_xi(p["xi_c"]), p["phase"]] for p in points])
    if t["isometry"]:
        doc.heading("Dynamical isometry at initialization").table(
            ["activation", "weights", "sigma_w^2", "sigma_b^2", "std of ln s", "mean of ln s", "resolved"],
            [[r["activation"], r["weights"], f"{r['sigma_w2']:.4g}", f"{r['sigma_b2']:g}", f"{r['log_sv_std']:.3f}",
              f"{r['log_sv_mean']:.3f}", r["resolved"]] for r in t["isometry"]])
    doc.heading("Plots")
    doc.image("Phase diagram", plot_phase(t["theory"], cfg, out / "phase.png"))
    doc.image("Lengths and correlations through random nets", plot_maps(t["maps"], out / "maps.png"))
    doc.image("Trainable depth", plot_depth(t["runs"], cfg, out / "depth.png"))
    doc.image("Jacobian spectra and training at criticality",
              plot_isometry(t["isometry"], t["isometry_curves"], out / "isometry.png"))
    doc.files(
        "`theory.csv` (the critical line for tanh and ReLU, sigma_b^2 0..0.2, and the theory at the trained "
        "points), `maps.csv` (length and correlation per layer, measured and predicted), `depth_scales.csv`, "
        "`isometry.csv`, `runs.csv` (one row per trained run: sigma_w2, sigma_b2, depth, seed, test_acc, "
        "xi_c), `isometry_runs.csv`, `isometry_curves.csv`, `config.json`, `meta.json`.")
    return doc.write(out)
