"""A matrix of small studies (activations, datasets, seeds, runs that end below and above 90 %): every
number the report quotes is recomputed from that run's own tables, no sentence assumes ReLU, MNIST or
several seeds where they do not hold, and no figure has an empty panel."""
import math
import re

import pytest

from initlab import cli
from initlab.experiments import probe_report
from initlab.experiments import study_report as report
from initlab.experiments.study import steps_to
from initlab.files import read_csv

CASES = {
    "relu-mnist-1seed": ("relu", "mnist", 1, 96),
    "tanh-fashion-2seeds": ("tanh", "fashion_mnist", 2, 96),
    "sigmoid-mnist-2seeds": ("sigmoid", "mnist", 2, 96),
    "relu-mnist-above-90": ("relu", "mnist", 1, 4800),
    "relu-mnist-bias-0.01": ("relu", "mnist", 1, 320, "--bias-init", "0.01"),
}


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def panels_all_show_something(fig):
    for ax in fig.axes:
        if not ax.axison:                       # a panel replaced by its one-line note
            assert ax.texts, "an empty panel without a note"
            continue
        assert ax.lines or ax.collections or ax.patches, f"empty axes: {ax.get_title()!r}"


@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.e2e) if c in ("relu-mnist-above-90",
                                                                                  "tanh-fashion-2seeds") else c
                                  for c in CASES])          # (the two longest in make test-all only)
def test_every_sentence_and_figure_is_true_for_its_own_run(case, tmp_path, capsys):
    activation, dataset, seeds, size, *extra = CASES[case]
    out = tmp_path / case
    code, _, err = run_cli(["study", "--inits", "zeros", "kaiming", "--activation", activation, "--dataset",
                            dataset, "--seeds", seeds, "--train-size", size, "--workers", "1", "--quiet",
                            "--out", out, *extra], capsys)
    assert code == 0, err
    text = (out / "report.md").read_text()
    runs = read_csv(out / "runs.csv")
    curves = read_csv(out / "curves.csv")
    f = report.load(out)

    # the settings line: what was trained
    steps = runs[0]["steps"]
    assert f"over {size:,} images ({steps:,} steps)" in text
    assert f"activation {activation}" in text and f"on {dataset}" in text

    # the results table quotes each init's mean over its own seeds; one seed shows no spread
    for init in ("zeros", "kaiming"):
        accs = [r["test_acc"] for r in runs if r["init"] == init]
        assert f"| {init} | {100 * sum(accs) / len(accs):.2f} %" in text
    if seeds == 1:
        assert "±" not in text.split("## Results", 1)[1].split("##", 1)[0]
        assert "(1 seed)" in text
        assert not re.search(r"(\d+\.\d\d) %–\1 %", text)            # no range from a number to itself

    # steps to 90 % counted from the curve: 450 of 500 held-out images is 90 %
    for r in runs:
        curve = [c for c in curves if c["init"] == r["init"] and c["seed"] == r["seed"]]
        first = next((c["step"] for c in curve if round(c["heldout_acc"] * 500) >= 450), None)
        assert r["steps_to_90"] == first == steps_to(curve, 0.90, 500)
    if case == "relu-mnist-above-90":
        assert any(r["steps_to_90"] is not None for r in runs), "this case must end above 90 %"

    # sentences that hold only under ReLU, or only for MNIST's digits
    if activation != "relu":
        assert "ReLU(" not in text and "relu(" not in text
    if dataset != "mnist":
        assert "digit" not in text
    zero_grad = [s for s in text.splitlines() if "gradient norm of" in s and "was 0" in s]
    bias = float(extra[1]) if extra else 0.0
    last = {}
    for r in read_csv(out / "layers.csv"):
        if r["init"] == "zeros" and r["seed"] == 0 and r["step"] >= last.get(r["layer"], {}).get("step", -1):
            last[r["layer"]] = r
    for sentence in zero_grad:
        assert f"{activation}({bias:g}) =" in sentence
        named = sentence.split("gradient norm of ", 1)[1].split(" was 0", 1)[0].split(", ")
        assert all(last[layer]["w_max"] == 0 == last[layer]["w_min"] for layer in named), "they moved"
    assert "dead (all zero)" not in text

    # eight weight-histogram moments over the run, whatever its length
    hist_steps = {(r["seed"], r["step"]) for r in read_csv(out / "histograms.csv") if r["init"] == "kaiming"}
    assert len({s for seed, s in hist_steps if seed == 0}) == min(8, steps + 1)

    # no empty panel in any figure
    for figure in (report.figure_curves(f), report.figure_layer_scales(f), report.figure_weight_grid(f)):
        panels_all_show_something(figure)
    top = report.figure_curves(f).axes[1].get_ylim()
    best = max(c["heldout_acc"] for c in curves)
    assert top[0] <= best <= top[1] + 1e-9, "the top-end panel misses the run's best accuracy"


@pytest.mark.slow
def test_a_probe_of_zeros_alone_draws_notes_instead_of_crashing(tmp_path, capsys):
    out = tmp_path / "probe"
    code, _, err = run_cli(["probe", "--inits", "zeros", "--activations", "relu", "--depth", "3", "--width",
                            "16", "--images", "16", "--seeds", "1", "--quiet", "--out", out], capsys)
    assert code == 0, err
    rows = read_csv(out / "probe.csv")
    assert all(r["forward_std"] == 0 or not math.isfinite(r["forward_std"]) for r in rows if r["hidden"])
    fig = probe_report.figure(rows, ["zeros"], ["relu"])
    panels_all_show_something(fig)
    assert any(not ax.axison for ax in fig.axes[:2])


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [1, 2])
def test_the_bonus_verdict_is_what_its_runs_say(seeds, tmp_path, capsys):
    out = tmp_path / "bonus"
    code, _, err = run_cli(["bonus", "--seeds", seeds, "--train-size", "96", "--record-every", "4",
                            "--workers", "1", "--quiet", "--out", out], capsys)
    assert code == 0, err
    accs = [r["test_acc"] for r in read_csv(out / "runs.csv")]
    text = (out / "report.md").read_text()
    verdict = "HOLDS" if min(accs) >= 0.985 else "FAILS"
    assert f"Verdict: {verdict}" in text and f"{100 * min(accs):.2f} %" in text
    if seeds == 1:
        assert "1 seed" in text and "over 1 seeds" not in text and "± 0.00" not in text
    else:
        assert f"over {seeds} seeds" in text


@pytest.mark.slow
def test_the_grid_names_the_best_init_its_table_shows(tmp_path, capsys):
    out = tmp_path / "grid"
    code, _, err = run_cli(["grid", "--inits", "zeros", "kaiming", "xavier", "--activations", "relu", "tanh",
                            "--seeds", "1", "--train-size", "96", "--workers", "1", "--quiet", "--out", out], capsys)
    assert code == 0, err
    rows = read_csv(out / "runs.csv")
    text = (out / "report.md").read_text()
    for activation in ("relu", "tanh"):
        accs = {r["init"]: r["test_acc"] for r in rows if r["activation"] == activation}
        best = max(accs, key=accs.get)
        assert f"{activation}: best {best} ({100 * accs[best]:.2f} %)" in text
