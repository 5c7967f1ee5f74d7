"""The study on real MNIST (small subsets, plus one full-epoch check), its files and its report."""
import dataclasses
import itertools
import json
import re

import pytest

from initlab import data, document, engine, files
from initlab.experiments import study, study_tables
from initlab.experiments import study_report as report
from initlab.runs import plan


@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset("mnist", quiet=True)


@pytest.fixture(scope="module")
def small_study(mnist, tmp_path_factory):
    cfg = study.StudyConfig(inits=["zeros", "uniform", "kaiming"], seeds=2,
                            train=engine.TrainConfig(train_size=1600, record_every=20))
    result = study.run_study(cfg, dataset=mnist, progress=False)
    out = tmp_path_factory.mktemp("study")
    study_tables.write_tables(out, cfg, result)
    report.write_report(out)
    return out, result


def test_study_writes_tidy_tables(small_study):
    out, result = small_study
    runs = files.read_csv(out / "runs.csv")
    assert len(runs) == 6
    for col in ("init", "seed", "test_acc", "steps", "train_seconds", "diverged"):
        assert col in runs[0]
    assert {(r["init"], r["seed"]) for r in runs} == {(i, s) for i in ("zeros", "uniform", "kaiming")
                                                      for s in (0, 1)}
    assert all(0 <= r["test_acc"] <= 1 and r["steps"] == 50 for r in runs)
    curves = files.read_csv(out / "curves.csv")
    assert {"init", "seed", "step", "heldout_acc", "train_loss"} <= set(curves[0])
    layers = files.read_csv(out / "layers.csv")
    assert {"layer", "w_std", "grad_norm", "act_std", "dead_frac", "distinct_units"} <= set(layers[0])
    hists = files.read_csv(out / "histograms.csv")
    assert {"bin_left", "bin_right", "count"} <= set(hists[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["train_size"] == 1600 and cfg["inits"] == ["zeros", "uniform", "kaiming"]


def test_zero_init_is_pinned_at_the_majority_digit_on_real_mnist(small_study):
    out, result = small_study
    zeros = [r for r in result.runs if r["init"] == "zeros"]
    assert all(r["test_acc"] == pytest.approx(0.1135) for r in zeros)   # digit 1: 1,135 of 10,000
    kaiming = [r for r in result.runs if r["init"] == "kaiming"]
    assert all(r["test_acc"] > 0.5 for r in kaiming)            # 50 steps: well above chance


def test_report_is_self_contained_and_its_observations_quote_the_data(small_study):
    out, _ = small_study
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r"src=['\"](?!data:)", html)                   # nothing loaded from outside
    for png in ("curves.png", "weights.png", "layer_scales.png"):
        assert (out / png).stat().st_size > 10_000
    md = (out / "report.md").read_text()
    assert "11.35 %" in md and "share of the most common test digit" in md
    assert "still exactly 0" in md
    runs = files.read_csv(out / "runs.csv")
    uniform_loss = sum(r["initial_loss"] for r in runs if r["init"] == "uniform") / 2
    assert f"{uniform_loss:.3g}" in md or f"{uniform_loss:.2g}" in md


def test_observations_change_when_the_data_change(small_study):
    out, _ = small_study
    files = report.load(out)
    before = report.observations(files)
    # the same study, but zeros reached 40 % and kaiming's initial loss was 50
    runs = [dict(r) for r in files.runs]
    for r in runs:
        if r["init"] == "zeros":
            r["test_acc"] = 0.40
    curves = [dict(c) for c in files.curves]
    for c in curves:
        if c["init"] == "kaiming" and c["step"] == 0:
            c["heldout_loss"] = 50.0
    changed = dataclasses.replace(files, runs=runs, curves=curves)
    after = report.observations(changed)
    assert any("share of the most common test digit" in s for s in before["zeros"])
    assert not any("share of the most common test digit" in s for s in after["zeros"])
    assert any("40.00 %" in s for s in after["zeros"])
    assert before["speed"] != after["speed"] or before["zeros"] != after["zeros"]


def test_rebuilding_the_report_gives_the_same_summary(small_study):
    out, _ = small_study
    first = (out / "report.md").read_text()
    report.write_report(out)
    assert (out / "report.md").read_text() == first


@pytest.mark.e2e
@pytest.mark.slow
def test_full_epoch_on_real_mnist_matches_the_lab(mnist):
    """The lab's claims at the defaults (one seed, one full epoch, Adam 1e-3, batch 32)."""
    cfg = study.StudyConfig(inits=["zeros", "xavier", "kaiming"], seeds=1)
    result = study.run_study(cfg, dataset=mnist, progress=False)
    acc = {r["init"]: r["test_acc"] for r in result.runs}
    assert acc["zeros"] == pytest.approx(0.1135)
    assert acc["xavier"] >= 0.97 and acc["kaiming"] >= 0.97
    last = max(r["step"] for r in result.layers)
    zero_w = [max(abs(r["w_min"]), abs(r["w_max"])) for r in result.layers
              if r["init"] == "zeros" and r["step"] == last]
    assert zero_w == [0, 0, 0, 0, 0]
    assert all(r["steps"] == 1875 for r in result.runs)


def _blocks(seeds, inits, workers, seeds_per_stack=0):
    """A study's seeds x inits grid in stacks of ``seeds_per_stack`` seeds, cut by ``plan.balance``."""
    per = seeds_per_stack or len(seeds)
    stacks = [seeds[i:i + per] for i in range(0, len(seeds), per)]
    return [(stacks[k][rows], list(inits)[cols])
            for k, rows, cols in plan.balance([(len(b), len(inits)) for b in stacks], workers)]


def test_balance_splits_the_grid_into_rectangles_the_workers_finish_together():
    seeds, inits = [0, 1, 2], ["a", "b", "c", "d", "e"]
    assert _blocks(seeds, inits, 1) == [([0, 1, 2], inits)]
    # 8 and 7 runs per worker (halving the inits would give 9 and 6); largest pieces first
    assert _blocks(seeds, inits, 2) == [([0], inits), ([2], inits), ([1], ["a", "b", "c"]), ([1], ["d", "e"])]
    assert _blocks(seeds, inits, 3) == [([s], inits) for s in seeds]
    assert _blocks(seeds, ["k"], 2) == [([0, 1], ["k"]), ([2], ["k"])]
    assert _blocks([0], ["k"], 4) == [([0], ["k"])]
    assert _blocks(list(range(10)), inits, 2) == [(list(range(5)), inits), (list(range(5, 10)), inits)]
    for S, I, W, per in itertools.product(range(1, 6), range(1, 7), range(1, 6), (0, 1, 2)):
        blocks = _blocks(list(range(S)), list(range(I)), W, seeds_per_stack=per)
        cells = [(s, i) for bs, bi in blocks for s in bs for i in bi]
        assert sorted(cells) == sorted(itertools.product(range(S), range(I)))   # each run once
        loads = [0] * W                       # workers take the next piece when free
        for bs, bi in blocks:
            loads[loads.index(min(loads))] += len(bs) * len(bi)
        assert max(loads) == -(-S * I // W) or W == 1, (S, I, W, per, blocks)


@pytest.mark.e2e
def test_worker_layout_does_not_change_the_results(mnist):
    def run(workers):
        cfg = study.StudyConfig(inits=["normal", "kaiming", "xavier"], seeds=2, workers=workers,
                                train=engine.TrainConfig(train_size=320, record_every=5))
        return {(r["init"], r["seed"]): r for r in study.run_study(cfg, dataset=mnist, progress=False).runs}
    one, two = run(1), run(2)
    assert one.keys() == two.keys()
    for key in one:
        assert one[key]["test_loss"] == pytest.approx(two[key]["test_loss"], rel=1e-4), key
        assert abs(one[key]["test_acc"] - two[key]["test_acc"]) <= 0.0003, key


INTERRUPTED_STUDY = """
import json, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)   # (a shell's background job starts with it ignored)
from initlab import data, engine
from initlab.experiments import study
cfg = study.StudyConfig(inits=["zeros", "kaiming", "xavier"], seeds=2, seeds_per_stack=1,
                        train=engine.TrainConfig(epochs=50, train_size=640, record_every=10))
started = []
def progress(n):
    if not started:
        started.append(n)
        print("training", flush=True)
result = study.run_study(cfg, dataset=data.load_dataset("mnist", quiet=True), progress=progress)
print(json.dumps({"interrupted": result.interrupted,
                  "runs": [(r["run"], r["steps"], r["interrupted"]) for r in result.runs],
                  "curve_runs": sorted({c["run"] for c in result.curves})}))
"""


def test_ctrl_c_on_a_study_in_one_process_keeps_what_it_recorded(mnist):
    """SIGINT to the whole process group (what Ctrl-C does) while the first of two stacks trains (what
    one of the runner's workers does with a task): the study returns, marked interrupted, with the
    runs trained so far and their records; the second stack never starts."""
    import os
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", INTERRUPTED_STUDY], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdout.readline().strip() == "training", p.stderr.read()[-2000:]
    os.killpg(p.pid, signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr[-2000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["interrupted"] is True
    total = 50 * 20                                     # 50 epochs of 640 images at batch 32
    assert out["runs"], "the interrupted stacks' runs were lost"
    assert len(out["runs"]) == 3, out["runs"]            # seed 0's stack; seed 1's never started
    assert all(0 <= steps < total and flagged for _, steps, flagged in out["runs"]), out["runs"]
    trained = {run for run, steps, _ in out["runs"] if steps > 0}
    assert trained <= set(out["curve_runs"]), out         # and what they recorded came back


def _draw(path, text="x"):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.text(0.5, 0.5, text)
    fig.savefig(path, dpi=40)
    return path


def _nothing(path):
    return None


def _broken(path):
    raise ValueError("no such column: 'heldout_acc'")


def test_draw_all_draws_every_figure_and_says_which_had_nothing(tmp_path):
    jobs = [(_draw, tmp_path / "a.png"), (_nothing, tmp_path / "b.png"), (_draw, tmp_path / "c.png")]
    assert document.draw_all(jobs) == [tmp_path / "a.png", None, tmp_path / "c.png"]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "b.png").exists()
    assert document.draw_all(jobs[1:]) == [None, tmp_path / "c.png"]     # the child's None


def test_a_plot_that_fails_in_the_child_raises_its_own_error(tmp_path):
    with pytest.raises(ValueError, match="no such column: 'heldout_acc'"):
        document.draw_all([(_broken, tmp_path / "a.png"), (_draw, tmp_path / "b.png")])


def _draw_all_in_a_daemon(folder):
    return document.draw_all([(_draw, folder / "a.png"), (_draw, folder / "b.png")])


def test_draw_all_works_in_a_daemonic_process(tmp_path):
    """A pool's worker (daemonic) may not fork: every figure is then drawn in it."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(1) as workers:
        assert workers.apply(_draw_all_in_a_daemon, (tmp_path,)) == [tmp_path / "a.png", tmp_path / "b.png"]
