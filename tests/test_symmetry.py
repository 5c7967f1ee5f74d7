"""Symmetry and how it breaks, measured: all-zero weights with random biases learn from the top down,
a nonzero constant keeps one distinct unit per layer, ZerO's equal units come apart without randomness."""
import pytest
import torch

from initlab import init, models
from initlab.data import load_dataset
from initlab.engine import TrainConfig
from initlab.experiments import study, study_report, study_tables


def test_a_bias_distribution_is_drawn_from_the_generator_after_each_weight():
    net = models.build("lenet5")
    info = init.initialize(net, "zeros", generator=torch.Generator().manual_seed(3), bias="normal:std=0.1")
    assert info["bias"] == "normal:std=0.1"
    biases = torch.cat([m.bias for _, m in init.init_layers(net)])
    assert all(torch.count_nonzero(m.weight) == 0 for _, m in init.init_layers(net))
    assert 0.08 < biases.std().item() < 0.12 and abs(biases.mean().item()) < 0.02
    again = models.build("lenet5")
    init.initialize(again, "zeros", generator=torch.Generator().manual_seed(3), bias="normal:std=0.1")
    assert torch.equal(biases, torch.cat([m.bias for _, m in init.init_layers(again)]))


@pytest.mark.parametrize("spec", ["xavier", "kaiming:mode=fan_in", "lsuv"])
def test_a_bias_distribution_must_need_no_fans(spec):
    with pytest.raises(ValueError, match="need no fans"):
        init.bias_distribution(spec)


def test_moves_sentence_says_top_down_only_when_it_is():
    layers = ["c1", "c3", "c5", "f6", "output"]
    down = study_report.moves_sentence("zeros", [("output", 1), ("f6", 2), ("c5", 3), ("c3", 4), ("c1", 5)],
                                       layers)
    assert "output at step 1; f6 at step 2" in down and "works down from the top" in down
    up = study_report.moves_sentence("zeros", [("c1", 1), ("output", 2)], layers)
    assert "not top-down" in up
    together = study_report.moves_sentence("zeros", [("c1", 25), ("output", 25)], layers)
    assert "--record-every 4" in together


def _study(tmp_path, inits, bias_init):
    cfg = study.StudyConfig(inits=inits, seeds=1, bias_init=bias_init, workers=1,
                            train=TrainConfig(train_size=320, record_every=4))
    result = study.run_study(cfg, dataset=load_dataset("mnist", quiet=True), progress=False)
    study_tables.write_tables(tmp_path, cfg, result)
    files = study_report.load(tmp_path)
    return files, study_report.layer_names(files)


@pytest.mark.slow
def test_zero_weights_with_random_biases_learn_from_the_top_down(tmp_path):
    files, layers = _study(tmp_path, ["zeros"], "normal:std=0.1")
    order = study_report.first_moves(files, "zeros")
    assert [layer for layer, _ in order] == list(reversed(layers))           # output first, c1 last
    assert [s for _, s in order] == sorted(s for _, s in order) and order[0][1] < order[-1][1]


@pytest.mark.slow
def test_a_constant_keeps_one_unit_per_layer_and_zero_one_comes_apart_by_structure(tmp_path):
    files, layers = _study(tmp_path, ["constant:value=0.01", "zero_one"], 0.0)
    hidden = [layer for layer in layers if layer != "output"]
    end = study_report.layer_at(files, "constant:value=0.01", "last", "distinct_units")
    assert all(end[layer] == 1 for layer in hidden)                          # symmetry never broken
    start = study_report.layer_at(files, "zero_one", "first", "distinct_units")
    last = study_report.layer_at(files, "zero_one", "last", "distinct_units")
    assert start["c1"] == 1 and last["c1"] == 6       # 1 -> 6 channels: one Hadamard column, 6 equal filters
    assert all(last[layer] >= start[layer] for layer in layers) and start["f6"] == 84
    sentences = " ".join(study_report.observations(files)["zeros"])
    assert "Distinct units of constant:value=0.01 at the end: c1 1" in sentences
    assert "zero_one (ZerO) is deterministic too" in sentences and "came apart" in sentences
