"""initlab width: the best lr per width and its shift, from fabricated rows and from a real run."""
import math

import pytest

from initlab import cli, files
from initlab.experiments import width
from initlab.experiments import width_report as report


def _rows(best: dict, spread: float = 0.0):
    """Training losses shaped as a parabola in log2 lr around each (parametrization, width)'s best."""
    rows = []
    for (p, w), k0 in best.items():
        for k in range(-12, -5):
            for seed in (0, 1):
                rows.append({"parametrization": p, "width": w, "log2_lr": k, "seed": seed, "diverged": False,
                             "train_loss": 0.3 + 0.01 * (k - k0) ** 2 + (spread if seed else 0.0)})
    return rows


def test_the_best_lr_and_its_shift_over_widths():
    rows = _rows({("sp", 64): -8, ("sp", 256): -10, ("sp", 1024): -12,
                  ("mup", 64): -8, ("mup", 256): -8, ("mup", 1024): -8})
    best = width.best_lrs(rows)
    assert best[("sp", 1024)]["log2_lr"] == -12 and best[("mup", 256)]["log2_lr"] == -8
    s = width.shifts(rows)
    assert s["sp"]["factor"] == 16 and s["mup"]["factor"] == 1
    text = " ".join(report.sentences(rows, [], {"coord_log2_lr": -8}))
    assert "sp: the best lr moved over the widths (2^-8 at 64, 2^-10 at 256, 2^-12 at 1024; 16x)" in text
    assert "mup: the best lr stayed put" in text
    assert "beyond the seed spread" in text


def test_a_shift_inside_the_seed_spread_is_called_so():
    rows = _rows({("sp", 64): -8, ("sp", 256): -9}, spread=0.05)
    assert "within the seed spread" in " ".join(report.sentences(rows, [], {"coord_log2_lr": -8}))


def test_a_diverged_run_is_never_best():
    rows = _rows({("sp", 64): -8})
    for r in rows:
        if r["log2_lr"] == -8:
            r["train_loss"], r["diverged"] = math.nan, True
    assert width.best_lrs(rows)[("sp", 64)]["log2_lr"] in (-9, -7)


@pytest.mark.parametrize("bad,message", [({"steps": 150}, "multiple of 100"), ({"widths": []}, "--widths"),
                                         ({"parametrizations": ["muP"]}, "--parametrizations")])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        width.validate(width.WidthConfig(**bad))


def test_the_command_writes_one_row_per_run_and_a_coordinate_check(tmp_path, capsys):
    out = tmp_path / "w"
    assert cli.main(["width", "--widths", "16", "64", "--log2-lrs", "-9", "-7", "--steps", "100", "--seeds", "1",
                     "--coord-steps", "2", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = files.read_csv(out / "runs.csv")
    assert len(rows) == 2 * 2 * 3
    assert set(rows[0]) >= {"width", "lr", "parametrization", "seed", "train_loss", "test_acc", "diverged"}
    assert {r["parametrization"] for r in rows} == {"sp", "mup", "ntk"}
    assert all(r["lr"] == pytest.approx(2.0 ** r["log2_lr"], rel=1e-4) and 0 < r["train_loss"] < 3 for r in rows)
    coord = files.read_csv(out / "coord.csv")
    assert {r["step"] for r in coord} == {0, 1, 2} and {r["layer"] for r in coord} == {"fc1", "fc2", "fc3", "output"}
    # μP zero-initializes the readout: its logits start at exactly 0
    assert all(r["mean_abs"] == 0 for r in coord if r["parametrization"] == "mup" and r["step"] == 0
               and r["layer"] == "output")
    md = (out / "report.md").read_text()
    for sentence in report.observations(out):
        assert sentence in md and sentence in text
    assert (out / "lr.png").stat().st_size > 1000 and (out / "coord.png").stat().st_size > 1000
