"""TensorBoard event files written by initlab, read back with TensorBoard's own EventAccumulator."""
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from initlab import cli, data
from initlab.engine import tensorboard as tb  # noqa: E402
from initlab.experiments import study_report as report
from initlab.files import read_csv
from initlab.runs import backends

SIZE = {"scalars": 0, "histograms": 0}   # 0 = keep every event


def read(folder: Path) -> EventAccumulator:
    ea = EventAccumulator(str(folder), size_guidance=SIZE)
    ea.Reload()
    return ea


def synthetic_rows():
    curves = [{"init": "xavier", "seed": 0, "run": 0, "step": s, "heldout_acc": 0.1 + 0.2 * s,
               "heldout_loss": 2.3 - s, "train_loss": math.nan if s == 0 else 2.0 - s,
               "train_acc": math.nan if s == 0 else 0.3 * s} for s in range(3)]
    w = torch.linspace(-1, 1, 101)
    layers = [{"step": 0, "layer": "c1", "w_mean": float(w.mean()), "w_std": float(w.std(correction=0)),
               "w_min": -1.0, "w_max": 1.0, "grad_norm": 0.5, "act_std": 0.7, "dead_frac": 0.25}]
    edges = torch.linspace(-1.5, 1.5, 49)
    counts = torch.histc(w, 48, -1.5, 1.5)
    hists = [{"step": 0, "layer": "c1", "bin_left": float(edges[k]), "bin_right": float(edges[k + 1]),
              "count": float(counts[k])} for k in range(48)]
    return curves, layers, hists, w


def test_scalars_and_histograms_read_back(tmp_path):
    curves, layers, hists, w = synthetic_rows()
    run = {"test_acc": 0.97, "test_loss": 0.1, "steps": 2}
    log_dir = tb.write_run(tmp_path / "tb" / "xavier" / "seed0", curves, layers, hists, run)
    ea = read(log_dir)
    held = ea.Scalars("accuracy/heldout")
    assert [e.step for e in held] == [0, 1, 2]
    assert [e.value for e in held] == pytest.approx([0.1, 0.3, 0.5])
    assert [e.step for e in ea.Scalars("loss/train")] == [1, 2]          # NaN points are left out
    assert ea.Scalars("accuracy/test")[0].value == pytest.approx(0.97)
    assert ea.Scalars("accuracy/test")[0].step == 2
    assert ea.Scalars("dead_frac/c1")[0].value == pytest.approx(0.25)
    h = ea.Histograms("weights/c1")[0].histogram_value
    assert h.num == 101
    assert (h.min, h.max) == (-1.0, 1.0)
    assert h.sum == pytest.approx(float(w.sum()), abs=1e-5)
    assert h.sum_squares == pytest.approx(float((w * w).sum()), rel=1e-6)
    assert list(h.bucket) == [b["count"] for b in hists]
    assert list(h.bucket_limit) == pytest.approx([b["bin_right"] for b in hists])


def test_rewriting_a_run_replaces_it(tmp_path):
    curves, layers, hists, _ = synthetic_rows()
    folder = tmp_path / "run"
    tb.write_run(folder, curves, layers, hists)
    tb.write_run(folder, curves, layers, hists)          # a rerun after a resume
    assert len(read(folder).Scalars("accuracy/heldout")) == 3
    assert len(list(folder.iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_gradient_histograms_match_autograd(tmp_path):
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5), torch.nn.ReLU(),
                                torch.nn.Linear(5, 3))
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    expected = {name: m.weight.grad.clone() for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear)}
    hists = tb.gradient_histograms(model, x, y)
    assert set(hists) == set(expected)
    for name, grad in expected.items():
        h = hists[name]
        assert h["num"] == grad.numel() and sum(h["bucket_counts"]) == grad.numel()
        assert h["sum"] == pytest.approx(float(grad.sum()), abs=1e-6)
        assert h["sum_squares"] == pytest.approx(float((grad ** 2).sum()), rel=1e-5)
        assert (h["min"], h["max"]) == pytest.approx((float(grad.min()), float(grad.max())))
    assert all(p.grad is None for p in model.parameters())
    tb.write_run(tmp_path / "g", [], [], [], grad_hists=hists)
    assert read(tmp_path / "g").Histograms("gradients/1")[0].histogram_value.num == 20


@pytest.fixture
def one_thread():
    """A shared machine: one OpenMP thread trains faster than two that wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_study_writes_events_equal_to_its_records(tmp_path, monkeypatch, one_thread):
    """initlab study --tensorboard on real MNIST (test split cut to 2,000 images to keep it quick):
    every run has an event file whose held-out curve and weight histograms are the ones in
    curves.csv / histograms.csv, and gradient histograms at initialization."""
    import dataclasses


    full = data.load_dataset("mnist")
    small = dataclasses.replace(full, test_images=full.test_images[:2000],
                                test_labels=full.test_labels[:2000])
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: small)
    monkeypatch.setattr(backends, "_DATASETS", {})
    monkeypatch.setattr(report, "make_plots", lambda f: [])     # (plots are the report's tests' job)
    out = tmp_path / "s"
    assert cli.main(["study", "--out", str(out), "--inits", "zeros", "kaiming", "--seeds", "1",
                     "--train-size", "96", "--record-every", "4", "--quiet", "--tensorboard",
                     "--workers", "1"]) == 0
    curves, hists = read_csv(out / "curves.csv"), read_csv(out / "histograms.csv")
    for init in ("zeros", "kaiming"):
        ea = read(out / "tb" / init / "seed0")
        mine = [r for r in curves if r["init"] == init]
        assert [e.value for e in ea.Scalars("accuracy/heldout")] == \
            pytest.approx([r["heldout_acc"] for r in mine], abs=1e-6)
        for e in ea.Histograms("weights/c1"):
            rows = [r for r in hists if r["init"] == init and r["layer"] == "c1" and r["step"] == e.step]
            assert list(e.histogram_value.bucket) == [r["count"] for r in rows]
        grads = ea.Histograms("gradients/c3")[0].histogram_value
        assert grads.num == 16 * 6 * 5 * 5
        if init == "zeros":     # all-zero weights: ReLU(0) = 0 upstream, so c3's gradient is exactly 0
            assert grads.min == grads.max == 0.0
        else:
            assert grads.sum_squares > 0
