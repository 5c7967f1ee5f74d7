"""initlab grid: the n/c rule, the table, and a tiny real run through the command line."""
import math

import pytest

from initlab.cli import main
from initlab.data import load_dataset
from initlab.experiments import grid, study
from initlab.files import read_csv

# --------------------------------------------------------------------------------------------------
# The n/c rule on fabricated rows
# --------------------------------------------------------------------------------------------------

def test_converged_threshold_is_20_percent():
    assert grid.NC_ACCURACY == 0.20
    assert grid.converged(0.20) and grid.converged(0.9)
    assert not grid.converged(0.1999) and not grid.converged(math.nan) and not grid.converged(None)


@pytest.mark.parametrize("accs,expected", [
    ([0.98, 0.982, 0.978], "98.00 ± 0.20"),
    ([0.1135, 0.1135, 0.098], "n/c"),                 # all-zero weights: the majority class
    ([0.15, 0.25, 0.26], "22.00 ± 6.08 (1/3 n/c)"),   # one seed failed, the mean did not
    ([0.98, math.nan, 0.97], "97.50 ± 0.71 (1/3 diverged)"),   # a diverged seed is counted, not averaged
    ([math.nan, math.nan], "diverged"),
    ([0.5, 0.05, 0.02], "n/c"),                       # mean 19 %
    ([0.97], "97.00 (1 seed)"),                       # one seed: no spread to show
    ([], ""),
])
def test_cell(accs, expected):
    assert grid.cell(accs) == expected


def test_grid_table_rows_are_inits_columns_are_activations():
    rows = [{"init": i, "activation": a, "seed": s, "test_acc": acc}
            for (i, a, acc) in [("zeros", "relu", 0.11), ("kaiming", "relu", 0.98),
                                ("zeros", "tanh", 0.11), ("kaiming", "tanh", 0.97)]
            for s in range(3)]
    head, body = grid.grid_table(rows, ["zeros", "kaiming"], ["relu", "tanh"])
    assert head == ["init \\ activation", "relu", "tanh"]
    assert body == [["zeros", "n/c", "n/c"], ["kaiming", "98.00 ± 0.00", "97.00 ± 0.00"]]
    text = " ".join(grid.observations(rows, ["zeros", "kaiming"], ["relu", "tanh"]))
    assert "relu: best kaiming (98.00 %); not converged (mean < 20 %): zeros" in text


def test_a_diverged_seed_is_counted_and_named_not_averaged_as_0():
    """A diverged run's test accuracy (here 0.098, what its NaN weights predict) is left out of the mean
    and said, in the cell and in the sentence."""
    rows = [{"init": "kaiming", "activation": "relu", "seed": s, "test_acc": a, "diverged": s == 2}
            for s, a in enumerate([0.98, 0.97, 0.098])]
    head, body = grid.grid_table(rows, ["kaiming"], ["relu"])
    assert body == [["kaiming", "97.50 ± 0.71 (1/3 diverged)"]]
    text = " ".join(grid.observations(rows, ["kaiming"], ["relu"]))
    assert text == "relu: best kaiming (97.50 %); diverged: kaiming (1/3 seeds, left out of its mean)"


# --------------------------------------------------------------------------------------------------
# Real MNIST, tiny
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_grid_command_on_a_tiny_subset(tmp_path, capsys):
    out = tmp_path / "g"
    code = main(["grid", "--inits", "zeros", "kaiming", "--activations", "relu", "tanh", "--seeds", "2",
                 "--train-size", "640", "--workers", "1", "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rows = read_csv(out / "grid.csv")
    assert len(rows) == 2 * 2 * 2
    assert {"init", "activation", "seed", "test_acc"} <= set(rows[0])
    assert {(r["init"], r["activation"]) for r in rows} == {(i, a) for i in ("zeros", "kaiming")
                                                            for a in ("relu", "tanh")}
    for r in rows:   # 20 steps of Adam: kaiming learns, all-zero weights stay at the majority class
        assert (r["test_acc"] > 0.5) if r["init"] == "kaiming" else (r["test_acc"] < 0.2)
        assert r["converged"] == (r["init"] == "kaiming")
    md = (out / "grid.md").read_text()
    assert "| zeros | n/c | n/c |" in md
    assert "n/c" in stdout and (out / "report.html").exists() and (out / "config.json").exists()


@pytest.mark.parametrize("args,message", [
    (["--activations", "relu", "swish"], "unknown activation 'swish'"),
    (["--activation", "relu"], "grid takes --activations"),
    (["--inits", "kaiming", "he_normal"], "unknown initializer 'he_normal'"),
    (["--inits", "dbn"], "dbn pre-trains fully connected layers only"),   # lenet5 is a conv net
    (["--seeds", "0"], "--seeds must be >= 1"),
])
def test_grid_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    code = main(["grid", *args, "--out", str(tmp_path / "g")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("initlab: error:") and message in err
    assert not (tmp_path / "g").exists()


def test_preflight_turns_an_init_failure_into_one_line_before_training(monkeypatch, tmp_path, capsys):
    real = study.build_and_initialize

    def fail_on_tanh(cfg, spec, seed, x_train=None):
        if cfg.activation == "tanh" and spec == "kaiming":
            raise RuntimeError("cannot do this")
        return real(cfg, spec, seed, x_train)

    monkeypatch.setattr(study, "build_and_initialize", fail_on_tanh)
    code = main(["grid", "--inits", "xavier", "kaiming", "--activations", "relu", "tanh",
                 "--out", str(tmp_path / "g")])
    _, err = capsys.readouterr()
    assert code == 2 and err == "initlab: error: --inits kaiming with activation tanh: cannot do this\n"
    assert not (tmp_path / "g").exists()


def test_preflight_runs_dbn_cheaply_on_an_mlp():
    cfg = study.StudyConfig(inits=["dbn:images=5000", "kaiming"], model="mlp")
    grid.preflight(cfg, ["sigmoid", "relu"], load_dataset("mnist", quiet=True))   # no error, seconds
