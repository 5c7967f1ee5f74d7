"""The report layer's one number format and one band over seeds (initlab.seeds), its skeleton and one
figure (initlab.document), on numbers worked by hand; and the reports use them (no report formats a
spread, builds a band or sets up a figure of its own)."""
import math
import re
import statistics
from pathlib import Path

import pytest

from initlab import document, seeds
from initlab.seeds import Seeds, band, bands, count, mean_std, over_seeds

NAN = math.nan

# --------------------------------------------------------------------------------------------------
# mean ± std: one format, one NaN policy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, kw, expected", [
    ([0.9, 0.92], {"scale": 1, "digits": 3}, "0.910 ± 0.014"),        # std = 0.02 / sqrt(2) = 0.01414
    ([0.9, 0.92], {}, "91.00 ± 1.41"),                               # a fraction as a percentage
    ([0.9, 0.92], {"unit": " %"}, "91.00 % ± 1.41"),
    ([0.98, 0.982, 0.978], {"digits": 1}, "98.0 ± 0.2"),
    ([0.97], {"unit": " %"}, "97.00 % (1 seed)"),                      # one value: no spread to show
    ([0.97], {}, "97.00 (1 seed)"),
    ([0.98, NAN, 0.97], {}, "97.50 ± 0.71 (1/3 diverged)"),          # NaN: counted, not averaged as 0
    ([0.98, None, 0.97], {}, "97.50 ± 0.71 (1/3 diverged)"),
    ([0.98, math.inf, 0.97], {}, "97.50 ± 0.71 (1/3 diverged)"),
    ([0.97, NAN], {"unit": " %"}, "97.00 % (1 seed, 1/2 diverged)"),
    ([NAN, NAN], {}, "diverged"),                                    # all NaN: no number at all
    ([], {}, ""),
    ([0.1135, 0.1135, 0.098], {"nc_below": 0.2}, "n/c"),
    ([0.15, 0.25, 0.26], {"nc_below": 0.2}, "22.00 ± 6.08 (1/3 n/c)"),
    ([0.11, NAN, 0.12], {"nc_below": 0.2}, "n/c (1/3 diverged)"),
    ([0.95, 0.15, NAN], {"nc_below": 0.2}, "55.00 ± 56.57 (1/3 n/c, 1/3 diverged)"),
])
def test_mean_std(values, kw, expected):
    assert mean_std(values, **kw) == expected


def test_a_run_flagged_diverged_is_dropped_whatever_its_value():
    s = over_seeds([0.98, 0.098, 0.97], [False, True, False])     # 0.098: the accuracy of NaN weights
    assert (s.n, s.diverged, s.runs) == (2, 1, 3)
    assert s.mean == pytest.approx(0.975) and s.std == pytest.approx(statistics.stdev([0.98, 0.97]))
    assert (s.lo, s.hi) == (0.97, 0.98)
    assert mean_std(s) == "97.50 ± 0.71 (1/3 diverged)"


def test_seeds_statistics_are_the_textbook_ones():
    xs = [0.91, 0.95, 0.93, 0.97]
    s = over_seeds(xs)
    assert s.mean == pytest.approx(statistics.fmean(xs)) and s.std == pytest.approx(statistics.stdev(xs))
    assert (s.n, s.lo, s.hi, s.values) == (4, 0.91, 0.97, tuple(xs))
    one, none = over_seeds([0.5]), over_seeds([NAN, None])
    assert (one.std, one.n) == (0.0, 1)
    assert none.n == 0 and none.diverged == 2 and math.isnan(none.mean) and math.isnan(none.lo)


def test_stored_statistics_format_the_same_way():
    """A table that kept only mean/std/min/n (the bonus's ablation.csv) goes through the same format."""
    assert mean_std(Seeds(3, 0.99, 0.001, 0.989, NAN), unit=" %") == "99.00 % ± 0.10"
    assert mean_std(Seeds(1, 0.99, 0.0, 0.99, 0.99), unit=" %") == "99.00 % (1 seed)"


def test_count():
    assert (count(1, "seed"), count(0, "seed"), count(3, "seed")) == ("1 seed", "0 seeds", "3 seeds")


# --------------------------------------------------------------------------------------------------
# The band over seeds
# --------------------------------------------------------------------------------------------------

def rows(init, seed, values, diverged=False):
    return [{"init": init, "seed": seed, "step": 10 * k, "acc": v, "diverged": diverged}
            for k, v in enumerate(values)]


def test_band_is_mean_and_min_max_per_step_without_the_nans():
    b = band(rows("a", 0, [0.1, 0.5, NAN]) + rows("a", 1, [0.3, NAN, NAN]) + rows("a", 2, [0.2, 0.7, None]),
             "step", "acc")
    assert b.x == [0, 10]                          # step 20 has no value on any seed: left out
    assert b.mean == pytest.approx([0.2, 0.6]) and b.lo == [0.1, 0.5] and b.hi == [0.3, 0.7]
    assert b.n == [3, 2]


def test_band_leaves_out_rows_of_a_diverged_run_and_sorts_x():
    data = list(reversed(rows("a", 0, [0.5, 0.6]))) + rows("a", 1, [0.0, 0.0], diverged=True)
    b = band(data, "step", "acc")
    assert (b.x, b.mean, b.n) == ([0, 10], [0.5, 0.6], [1, 1])
    assert band(rows("a", 0, [NAN, NAN]), "step", "acc").x == []


def test_geometric_band_for_log_axes():
    b = band([{"layer": 1, "std": 1.0}, {"layer": 1, "std": 4.0}, {"layer": 1, "std": 0.0},
              {"layer": 2, "std": 0.0}], "layer", "std", geometric=True)
    assert b.x == [1] and b.mean == pytest.approx([2.0]) and (b.lo, b.hi) == ([1.0], [4.0])


def test_bands_group_in_first_seen_order_and_drop_empty_groups():
    data = rows("b", 0, [0.5]) + rows("a", 0, [0.4]) + rows("c", 0, [NAN])
    out = bands(data, "init", "step", "acc")
    assert list(out) == ["b", "a"] and out["a"].mean == [0.4]


# --------------------------------------------------------------------------------------------------
# One skeleton
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("meta, note, title, first", [
    ({}, None, "T", "S."),
    ({"interrupted": True}, None, "T (interrupted)", "Interrupted: every table and sentence here comes from "
                                                     "the runs recorded before Ctrl-C."),
    ({"interrupted": True}, "Interrupted: 2 of 4.", "T (interrupted)", "Interrupted: 2 of 4."),
    ({"failed": ["a", "b"]}, None, "T (2 runs failed: not in the tables)", "S."),
    ({"failed": ["a"]}, "Incomplete: 1 planned run did not finish.", "T (1 run failed: not in the tables)",
     "Incomplete: 1 planned run did not finish."),
    ({}, "Incomplete: 3 planned runs did not finish.", "T (incomplete)", "Incomplete: 3 planned runs did not finish."),
])
def test_every_report_starts_with_one_head(meta, note, title, first):
    doc = document.Document.report("T", "S", meta, note).files("`runs.csv`")
    lines = doc.markdown().splitlines()
    assert lines[0] == f"# {title}" and lines[2] == "S."
    assert (lines[4] if note or meta.get("interrupted") else lines[2]) == first
    assert lines[-3:] == ["## Files", "", "`runs.csv`"]


# --------------------------------------------------------------------------------------------------
# One figure
# --------------------------------------------------------------------------------------------------

def test_figure_gives_a_grid_of_axes_and_save_writes_a_png(tmp_path):
    fig, axes = document.figure(2, 3, 9, 5)
    assert axes.shape == (2, 3)
    document.grids(axes)
    axes[0][0].plot([0, 1], [0, 1])
    path = document.save(fig, tmp_path / "a.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    fig, axes = document.figure(1, 2, 8, 3, margins={"left": 0.5})      # fixed margins: no tight layout
    assert axes.shape == (1, 2) and fig.get_layout_engine() is None
    assert fig.subplotpars.left == pytest.approx(0.5 / 8)


# --------------------------------------------------------------------------------------------------
# Every report uses them
# --------------------------------------------------------------------------------------------------

EXPERIMENTS = Path(document.__file__).parent / "experiments"
REPORTS = sorted(EXPERIMENTS.glob("*report*.py")) + sorted(EXPERIMENTS.glob("study_*.py")) + [
    EXPERIMENTS / "grid.py", EXPERIMENTS / "bonus.py"]


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.name)
def test_no_report_formats_a_spread_or_draws_with_pyplot_itself(path):
    text = path.read_text()
    assert not re.search(r"± \{", text), "a mean ± std formatted outside seeds.mean_std"
    assert not re.search(r"matplotlib\.pyplot|tight_layout\(|Figure\(|savefig\(", text), \
        "a figure set up or saved outside document.figure / document.save"
    assert "per_step" not in text, "a band over seeds computed outside seeds.band"


@pytest.mark.parametrize("path", REPORTS + [Path(document.__file__), Path(seeds.__file__)], ids=lambda p: p.name)
def test_no_report_module_is_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= 500
