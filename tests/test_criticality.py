"""initlab criticality: its plan, its tables and every sentence of its report against its own numbers."""
import math

import pytest

from initlab import cli, files
from initlab.experiments import criticality as crit
from initlab.experiments import criticality_report as report
from initlab.init import mean_field as mf

SMALL = ["--depths", "2", "50", "--sigma-w2s", "1.0", "4.0", "--width", "16", "--steps", "30", "--map-width", "64",
         "--map-depth", "12", "--map-seeds", "2", "--isometry-depth", "6", "--isometry-width", "32", "--seeds", "1",
         "--workers", "1", "--quiet"]


def test_the_plan_stacks_every_sigma_w2_of_a_depth_and_adds_the_isometry_pair():
    cfg = crit.CriticalityConfig(sigma_w2s=[1.0, 4.0], depths=[10, 30])
    groups = crit.plan(cfg)
    critical = crit.critical_point(cfg)
    assert critical == pytest.approx(1.761, abs=1e-3)
    assert [g.depth for g in groups] == [30, 10, cfg.isometry_depth]
    assert groups[0].inits == [crit.gaussian_spec(s) for s in (1.0, critical, 4.0)]
    assert groups[-1].inits == [crit.gaussian_spec(critical), crit.orthogonal_spec(critical)]
    assert groups[0].bias_init == f"normal:std={math.sqrt(0.05):.6g}"
    assert groups[0].train.train_size == cfg.steps * cfg.batch_size and not groups[0].train.record
    assert groups[-1].train.record


@pytest.mark.parametrize("setting,message", [({"sigma_w2s": [0.0]}, "--sigma-w2s"), ({"depths": []}, "--depths"),
                                             ({"activation": "nope"}, "unknown activation"),
                                             ({"sigma_b2": -1.0}, "--sigma-b2")])
def test_bad_settings_are_refused_in_one_line(setting, message):
    with pytest.raises(ValueError, match=message):
        crit.validate(crit.CriticalityConfig(**setting))


def test_the_fitted_depth_scale_recovers_an_exponential():
    layers = list(range(30))
    c = [1 - 0.5 * math.exp(-layer / 6.0) for layer in layers]
    assert crit.fitted_depth_scale(layers, c, 1.0, floor=1e-6) == pytest.approx(6.0, rel=1e-6)
    assert math.isnan(crit.fitted_depth_scale(layers[:2], c[:2], 1.0, floor=1e-6))


def test_measured_maps_follow_the_theory_on_wide_nets():
    cfg = crit.CriticalityConfig(sigma_w2s=[1.3], critical=False, map_width=1024, map_depth=12, map_seeds=2)
    rows = crit.map_rows(cfg)
    assert len(rows) == 13 and rows[0]["q_predicted"] == 1.0
    for r in rows:
        assert r["q"] == pytest.approx(r["q_predicted"], rel=0.2)       # finite width: a few % a layer
        assert r["c"] == pytest.approx(r["c_predicted"], abs=0.05)


def test_the_command_writes_theory_measurements_runs_and_a_report_that_states_them(tmp_path, capsys):
    out = tmp_path / "crit"
    assert cli.main(["criticality", "--out", str(out)] + SMALL) == 0
    text = capsys.readouterr().out
    theory = files.read_csv(out / "theory.csv")
    line = {(r["activation"], r["sigma_b2"]): r["sigma_w2_critical"] for r in theory if r["kind"] == "critical_line"}
    assert line[("relu", 0.0)] == pytest.approx(2.0) and line[("tanh", 0.05)] == pytest.approx(1.761, abs=1e-3)
    assert {r["sigma_b2"] for r in theory if r["kind"] == "critical_line"} >= {0.0, 0.1, 0.2}
    runs = files.read_csv(out / "runs.csv")
    assert {(r["sigma_w2"], r["depth"]) for r in runs} == {(s, d) for s in (1.0, 1.761, 4.0) for d in (2, 50)}
    for r in runs:
        assert r["xi_c"] == pytest.approx(mf.analyze(r["sigma_w2"], 0.05, "tanh").xi_c, rel=1e-6) or \
            math.isinf(r["xi_c"]) or r["xi_c"] > 1e4
        assert set(r) >= {"sigma_w2", "sigma_b2", "depth", "seed", "test_acc", "xi_c"}
    iso = {(r["activation"], r["weights"]): r["log_sv_std"] for r in files.read_csv(out / "isometry.csv")}
    assert iso[("tanh", "gaussian")] >= 5 * iso[("tanh", "orthogonal")]
    assert iso[("relu", "gaussian")] < 2 * iso[("relu", "orthogonal")]
    md = (out / "report.md").read_text()
    for sentence in report.observations(out):
        assert sentence in md and sentence in text
    # every sentence about trained nets is what runs.csv says
    acc = {}     # a diverged run has no accuracy: it stalled, and is left out of the mean
    for r in runs:
        acc.setdefault((r["sigma_w2"], r["depth"]), []).extend([] if r["diverged"] else [r["test_acc"]])
    far = [(s, d) for (s, d) in acc if d >= report.FAR * mf.analyze(s, 0.05, "tanh").xi_c]
    stalled = [k for k in far if not acc[k] or sum(acc[k]) / len(acc[k]) < report.STALLS]
    assert far and f"{len(stalled)} of {len(far)} nets at least {report.FAR} xi_c deep" in md
    for name in ("phase.png", "maps.png", "depth.png", "isometry.png", "report.html"):
        assert (out / name).stat().st_size > 1000
