"""Models named with their settings (``mlp:width=256,depth=30``) in study, sweep grids, depth and summary."""
import json
from pathlib import Path

import pytest
import torch

from initlab import cli, models
from initlab.files import read_csv
from initlab.registry import split_spec

TINY = ["--train-size", "96", "--record-every", "4", "--seeds", "1", "--workers", "1", "--quiet"]


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def spec_of(name: str, options: dict) -> str:
    text = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items())
    return f"{name}:{text}" if text else name


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_setting_of_every_model_round_trips_through_a_spec(name):
    defaults = models.settable_options(name)
    assert not set(defaults) & set(models.FIXED_OPTIONS)
    assert models.parse_model(spec_of(name, defaults)) == (name, defaults)
    # a spec that changes every size builds a model with that size
    changed = {k: (v + 1 if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in defaults.items()}
    model = models.build(name, **models.parse_model(spec_of(name, changed))[1])
    default_model = models.build(name)
    sizes_changed = any(isinstance(v, int) and not isinstance(v, bool) for v in defaults.values())
    assert (models.count_parameters(model) != models.count_parameters(default_model)) == sizes_changed


def test_spec_values_are_typed_from_the_text():
    assert split_spec("m:a=3,b=0.5,c=x,d=None", "model") == ("m", {"a": 3, "b": 0.5, "c": "x", "d": None})
    assert models.parse_model("mlp:conv=true") == ("mlp", {"conv": True})
    assert models.parse_model("lenet5:pool=max,c3_table=false") == ("lenet5", {"pool": "max", "c3_table": False})


def test_summary_builds_the_spec(capsys):
    code, out, _ = run_cli(["summary", "--model", "mlp:width=16,depth=3"], capsys)
    assert code == 0
    assert "fc3" in out and "fc4" not in out
    # 784*16+16 + 2*(16*16+16) + 16*10+10
    assert f"{784 * 16 + 16 + 2 * (16 * 16 + 16) + 16 * 10 + 10:,}" in out


@pytest.mark.slow
def test_a_model_spec_trains_what_the_flags_train(tmp_path, capsys):
    a, b = tmp_path / "spec", tmp_path / "flags"
    assert run_cli(["study", "--inits", "kaiming", "--model", "mlp:width=16,depth=3", *TINY, "--out", a],
                   capsys)[0] == 0
    assert run_cli(["study", "--inits", "kaiming", "--model", "mlp", "--width", "16", "--depth", "3", *TINY,
                    "--out", b], capsys)[0] == 0
    spec_run, flag_run = read_csv(a / "runs.csv")[0], read_csv(b / "runs.csv")[0]
    assert spec_run["model"] == "mlp:width=16,depth=3"
    assert spec_run["test_acc"] == flag_run["test_acc"] and spec_run["test_loss"] == flag_run["test_loss"]
    assert sorted({r["layer"] for r in read_csv(a / "layers.csv")}) == ["fc1", "fc2", "fc3", "output"]


@pytest.mark.slow
def test_a_sweep_grid_searches_over_hidden_sizes(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text('inits = "kaiming"\nseeds = 1\ntrain_size = 96\nrecord_every = 4\n'
                    'model = ["two_layer_fc:hidden=8", "two_layer_fc:hidden=64"]\n')
    out = tmp_path / "sweep"
    code, _, err = run_cli(["sweep", grid, "--workers", "1", "--quiet", "--out", out], capsys)
    assert code == 0, err
    runs = read_csv(out / "runs.csv")
    assert sorted(r["model"] for r in runs) == ["two_layer_fc:hidden=64", "two_layer_fc:hidden=8"]
    assert len({r["test_acc"] for r in runs}) == 2     # two different nets, not one trained twice


@pytest.mark.slow
def test_depth_takes_the_plain_nets_settings_from_a_spec(tmp_path, capsys):
    out = tmp_path / "depth"
    code, _, err = run_cli(["depth", "--depths", "2", "--inits", "kaiming", "--lrs", "0.01",
                            "--model", "mlp:width=12", "--train-size", "96", "--seeds", "1", "--workers", "1",
                            "--quiet", "--out", out], capsys)
    assert code == 0, err
    cfg = json.loads(Path(out / "config.json").read_text())
    assert cfg["width"] == 12 and cfg["model"] == "mlp"
    probe = read_csv(out / "probe.csv")
    assert probe, "the deepest net's probe"


def test_a_spec_build_is_the_same_net_as_keyword_arguments():
    torch.manual_seed(0)
    a = models.build("mlp", **models.parse_model("mlp:width=8,depth=2,conv=true")[1])
    b = models.build("mlp", width=8, depth=2, conv=True)
    assert [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]
