"""The Python API (``initlab.api``, re-exported by ``import initlab``): every name does what its
docstring says, its docstring examples run, a study saved and loaded back has equal tables, and an
initializer registered in ``__main__`` reaches a study's worker processes."""
import doctest
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import initlab
from initlab import api, api_inits, cli, files, init, user_inits
from initlab.engine import pool
from initlab.experiments.catalog import EXPERIMENTS, FLAT
from initlab.options import UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_registry():
    """Whatever a test registers is gone afterwards (the registries are process-wide)."""
    saved = {kind: dict(reg._items) for kind, reg in user_inits.REGISTRIES.items()}
    yield
    for kind, reg in user_inits.REGISTRIES.items():
        reg._items.clear()
        reg._items.update(saved[kind])


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, env=env, **kw)


# --------------------------------------------------------------------------------------------------
# The package root
# --------------------------------------------------------------------------------------------------

def test_the_package_root_exports_the_api():
    # the root's own list, plus a function per flat experiment on the runner, made from the catalog
    assert set(api.__all__) == set(initlab.__all__) | set(FLAT)
    for name in api.__all__:
        assert getattr(initlab, name) is getattr(api, name)
        assert name in dir(initlab)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        initlab.nothing_here  # noqa: B018


def test_import_initlab_stays_light():
    """The API (pandas, every experiment) loads on first use, not with ``import initlab``, which every
    worker process does; initlab's modules too (``initlab.init.fans`` works straight away)."""
    res = _python(["-c", "import sys, torch, initlab, initlab.options; print('pandas' in sys.modules, "
                         "'initlab.api' in sys.modules, initlab.init.fans(torch.empty(3, 2)))"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False", "(2,", "3)"]


def test_docstring_examples_run(clean_registry):
    """Every ``>>>`` example of the API (a few tiny trainings among them) gives what it shows."""
    results = [doctest.testmod(m, optionflags=doctest.NORMALIZE_WHITESPACE) for m in (api, api_inits)]
    failed, attempted = map(sum, zip(*results))
    assert attempted >= 30 and failed == 0


# --------------------------------------------------------------------------------------------------
# initialize, register_init, models and names
# --------------------------------------------------------------------------------------------------

class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(2, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3))
        self.head = nn.Linear(16, 3)
        self.norm = nn.LayerNorm(3)          # not a Linear/ConvNd: left alone


def test_initialize_any_module_same_seed_same_draw():
    a, b = Nested(), Nested()
    norm_before = a.norm.weight.clone()
    info = initlab.initialize(a, "kaiming:mode=fan_out", seed=7, activation="tanh", bias=0.1)
    initlab.initialize(b, "kaiming:mode=fan_out", seed=7, activation="tanh", bias=0.1)
    assert info["seed"] == 7 and info["init"] == "kaiming:mode=fan_out"
    assert info["layers"] == ["body.0", "body.2", "head"]
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    assert torch.equal(a.norm.weight, norm_before)
    assert bool((a.head.bias == 0.1).all())
    # a seed is a torch.Generator seeded with it: the same draw as initlab.init with that generator
    c = Nested()
    init.initialize(c, "kaiming:mode=fan_out", generator=torch.Generator().manual_seed(7),
                    activation="tanh", bias=0.1)
    assert torch.equal(a.head.weight, c.head.weight)


def test_initialize_seed_generator_or_a_fresh_seed():
    net = nn.Linear(50, 20)
    info = initlab.initialize(net, "xavier", generator=torch.Generator().manual_seed(3))
    assert info["seed"] is None
    fresh = initlab.initialize(net, "xavier")
    drawn = net.weight.clone()
    assert isinstance(fresh["seed"], int) and fresh["seed"] >= 0
    initlab.initialize(net, "xavier", seed=fresh["seed"])
    assert torch.equal(net.weight, drawn)                    # the returned seed reproduces the draw
    with pytest.raises(ValueError, match="seed or generator, not both"):
        initlab.initialize(net, "xavier", seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="unknown initializer 'nope'; choose from: .*kaiming"):
        initlab.initialize(net, "nope", seed=1)


def test_build_model_and_the_names():
    assert "kaiming" in initlab.init_names() and "lsuv" in initlab.init_names()
    assert initlab.model_names()[:2] == ["lenet5", "mlp"]
    net = initlab.build_model("lenet5", activation="tanh")
    assert sum(p.numel() for p in net.parameters()) == 61_706
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown model 'resnet9000'; choose from: lenet5, mlp"):
        initlab.build_model("resnet9000")


def _define_in_main(source: str):
    """A function as a notebook cell or a script defines it: ``__module__ == '__main__'``."""
    scope = {"__name__": "__main__"}
    exec(textwrap.dedent(source), scope)
    return scope


CELL = """
def cell_init(weight, *, generator, activation="relu", std=0.05):
    weight.normal_(0.0, std, generator=generator)
"""


def test_register_init_in_a_notebook_cell_run_twice(clean_registry):
    for formula in ("N(0, std^2)", "N(0, std^2), second version"):
        fn = _define_in_main(CELL)["cell_init"]
        initlab.register_init("cell_init", formula=formula)(fn)     # a cell run again: no error
    assert init.describe("cell_init") == "cell_init(std=0.05): N(0, std^2), second version"
    net = nn.Linear(1000, 100)
    initlab.initialize(net, "cell_init:std=0.2", seed=0)
    assert abs(net.weight.std().item() - 0.2) < 0.01
    # an initializer of a module (initlab's own, or a library's) is still registered only once
    with pytest.raises(KeyError, match="registered twice"):
        initlab.register_init("kaiming", formula="x")(lambda weight, *, generator, activation="relu": None)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("function", [initlab.study, initlab.probe, initlab.transfer])
def test_an_unknown_setting_lists_the_valid_ones(function):
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'learning_rate'; valid: .*\bseeds\b"):
        function(learning_rate=0.1)


@pytest.mark.parametrize("function, settings, message", [
    (initlab.study, {"lr": 0}, "lr must be > 0, got 0.0"),
    (initlab.study, {"train_size": 0}, "train_size must be >= 1, got 0"),
    (initlab.study, {"inits": ["kaiming", "nope"]}, "unknown initializer 'nope'"),
    (initlab.study, {"seeds": "three"}, "bad value for seeds: 'three'"),
    (initlab.probe, {"activations": ["swish"]}, "unknown activation 'swish'"),
    (initlab.transfer, {"target_sizes": [0]}, "target_sizes must be >= 1"),
])
def test_a_bad_value_is_one_line_before_any_work(function, settings, message):
    with pytest.raises(UsageError, match=message) as e:
        function(**settings)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and "--" not in str(e.value)


def test_an_out_folder_with_results_is_refused(tmp_path):
    files.atomic_write_text(tmp_path / "runs.csv", "init\nzeros\n")
    with pytest.raises(UsageError, match="already holds results; choose another folder or pass force=True"):
        initlab.study(inits=["zeros"], out=tmp_path)


def test_load_says_what_a_folder_lacks(tmp_path):
    with pytest.raises(FileNotFoundError):
        initlab.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no initlab results"):
        initlab.load(tmp_path)
    files.write_result(tmp_path / "grid", "grid", {}, {"grid": [], "runs": [{"init": "kaiming"}]})
    with pytest.raises(ValueError, match="holds a grid result.*pandas.read_csv"):
        initlab.load(tmp_path / "grid")


# --------------------------------------------------------------------------------------------------
# User initializers and worker processes
# --------------------------------------------------------------------------------------------------

def test_carry_is_the_entry_point_itself_without_user_inits(clean_registry):
    assert user_inits.user_entries() == []
    assert user_inits.carry(print) is print


def test_a_payload_registers_what_the_worker_lacks(clean_registry):
    fn = _define_in_main(CELL)["cell_init"]
    initlab.register_init("cell_init", formula="N(0, std^2)")(fn)
    data = user_inits.payload()
    assert [name for _, name, _ in user_inits.user_entries()] == ["cell_init"]
    assert user_inits.register_payload(data) == []             # already here: left alone
    del init.INITIALIZERS._items["cell_init"]                  # as in a fresh worker
    assert user_inits.register_payload(data) == ["cell_init"]
    net = nn.Linear(1000, 100)
    initlab.initialize(net, "cell_init", seed=0)
    assert abs(net.weight.std().item() - 0.05) < 0.003


def _weight_std_in_worker(init_name, steps):
    net = nn.Linear(1000, 100)
    initlab.initialize(net, init_name, seed=0)
    return net.weight.std().item()


@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=pytest.mark.e2e)])    # (2: spawned, 3.5 s)
def test_a_worker_knows_an_init_registered_in_a_cell_forked_or_spawned(clean_registry, threads):
    """Single-threaded workers are forked on Linux (they inherit the registry); others are spawned
    (the payload brings the initializer)."""
    fn = _define_in_main(CELL)["cell_init"]
    initlab.register_init("cell_init", formula="N(0, std^2)")(fn)
    linux = sys.platform.startswith("linux")
    assert pool.start_method(threads) == ("fork" if threads == 1 and linux else "spawn")
    results = {}
    pool.run(_weight_std_in_worker, ["cell_init"], workers=1, threads=threads,
             on_result=lambda k, result, error: results.update({k: (result, error)}))
    std, error = results[0]
    assert error is None and abs(std - 0.05) < 0.003


def test_an_init_that_cannot_be_pickled_is_named(clean_registry):
    scope = _define_in_main("""
        import threading
        LOCK = threading.Lock()
        def locked(weight, *, generator, activation="relu"):
            with LOCK:
                weight.zero_()
    """)
    initlab.register_init("locked", formula="0")(scope["locked"])
    with pytest.raises(ValueError, match="initializer 'locked' cannot be sent to a worker .*workers=1"):
        user_inits.payload()


SCRIPT = '''
"""A user's script: one init registered at the top level (spawn runs that again in each worker), one
inside main() (only the payload can bring that one to a worker, as from a notebook)."""
import json
import os
import sys

import initlab


@initlab.register_init("top_level", formula="N(0, 0.02^2)")
def top_level(weight, *, generator, activation="relu"):
    weight.normal_(0.0, 0.02, generator=generator)


def main():
    pids = sys.argv[1]

    @initlab.register_init("from_main", formula="N(0, std^2)")
    def from_main(weight, *, generator, activation="relu", std=0.05):
        with open(os.path.join(pids, str(os.getpid())), "w"):
            pass                                  # where it ran
        weight.normal_(0.0, std, generator=generator)

    s = initlab.study(inits=["from_main:std=0.08", "top_level", "kaiming"], seeds=2, train_size=64,
                      record_every=1, workers=2, progress=False)
    start = s.layers[(s.layers.step == 0) & (s.layers.layer == "c3")]
    print(json.dumps({"pid": os.getpid(), "runs": len(s.runs), "stacks": sorted(set(s.runs.stack_size)),
                      "w_std": start.groupby("init").w_std.mean().to_dict()}))


if __name__ == "__main__":
    main()
'''


@pytest.mark.e2e
@pytest.mark.slow
def test_a_user_init_from_main_trains_on_two_workers(tmp_path):
    script, pids = tmp_path / "my_study.py", tmp_path / "pids"
    script.write_text(SCRIPT)
    pids.mkdir()
    res = _python([str(script), str(pids)], cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["runs"] == 6 and max(out["stacks"]) < 6                 # split over the processes
    ran_in = {int(p.name) for p in pids.iterdir()}
    assert ran_in and out["pid"] not in ran_in                         # in the workers, not the driver
    assert abs(out["w_std"]["from_main:std=0.08"] - 0.08) < 0.008      # c3: 2,400 weights
    assert abs(out["w_std"]["top_level"] - 0.02) < 0.002


# --------------------------------------------------------------------------------------------------
# Running and loading experiments
# --------------------------------------------------------------------------------------------------

TABLES = {"runs": "runs", "curves": "curves", "layers": "layers", "histograms": "histograms"}


@pytest.mark.slow
def test_study_in_memory_then_saved_loaded_and_reported(tmp_path, capsys):
    s = initlab.study(inits=["zeros", "kaiming"], seeds=2, train_size=96, record_every=2, workers=1,
                      progress=False)
    assert s.folder is None and not s.interrupted
    assert s.config["train"]["train_size"] == 96 and s.config["seed_list"] == [0, 1]
    assert len(s.runs) == 4 and set(s.runs.init) == {"zeros", "kaiming"}
    assert set(s.summary.init) == {"zeros", "kaiming"}
    assert s.runs.test_acc.between(0, 1).all()
    assert pd.api.types.is_bool_dtype(s.runs.diverged)
    assert list(s.observations) == ["Why do better-scaled initializations train faster?",
                                    "Why do all-zero weights stop learning?"]
    assert any("zeros ended at" in x for x in s.observations["Why do all-zero weights stop learning?"])
    for fig in (s.plot_curves(), s.plot_weights(), s.plot_layer_scales()):
        assert isinstance(fig, Figure) and fig.axes
        assert fig._repr_png_().startswith(b"\x89PNG")          # Jupyter shows it, pyplot or not
    assert "<table>" in s._repr_html_() and "kaiming" in s._repr_html_()
    assert "2 inits x 2 seeds" in repr(s)

    folder = s.save(tmp_path / "saved")
    assert s.folder == folder
    for name in ("config.json", "meta.json", "runs.csv", "curves.csv", "layers.csv", "histograms.csv",
                 "curves.png", "weights.png", "layer_scales.png", "report.md", "report.html"):
        assert (folder / name).stat().st_size > 0, name
    for attr, csv in TABLES.items():                # the DataFrames have the CSV files' columns
        assert list(getattr(s, attr).columns) == list(files.read_csv(folder / f"{csv}.csv")[0])
    back = initlab.load(folder)
    assert isinstance(back, initlab.Study) and back.folder == folder
    for attr in TABLES:
        pd.testing.assert_frame_equal(getattr(back, attr), getattr(s, attr))
    assert back.config == s.config and back.observations == s.observations
    with pytest.raises(UsageError, match="already holds results"):
        s.save(folder)
    s.save(folder, force=True)

    (folder / "report.html").unlink()
    assert cli.main(["report", str(folder)]) == 0
    assert (folder / "report.html").stat().st_size > 0
    capsys.readouterr()


@pytest.mark.slow
def test_study_with_out_writes_what_the_command_writes(tmp_path):
    s = initlab.study(inits=["kaiming"], seeds=1, train_size=64, workers=1, progress=False,
                      out=tmp_path / "s")
    assert s.folder == tmp_path / "s" and (s.folder / "report.html").exists()
    assert files.experiment_of(s.folder) == "study"
    pd.testing.assert_frame_equal(initlab.load(s.folder).layers, s.layers)


@pytest.mark.slow
def test_load_reads_a_folder_the_command_line_wrote(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["study", "--inits", "zeros", "kaiming", "--seeds", "1", "--train-size", "96",
                     "--record-every", "4", "--workers", "1", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    s = initlab.load(out)
    assert isinstance(s, initlab.Study) and len(s.runs) == 2
    pd.testing.assert_frame_equal(s.curves, pd.read_csv(out / "curves.csv"), check_dtype=False)


@pytest.mark.e2e
@pytest.mark.slow
def test_probe_and_transfer_return_their_results(tmp_path):
    p = initlab.probe(inits=["xavier", "kaiming"], activations=["relu", "tanh"], depth=3, width=16,
                      images=16, seeds=1, progress=False)
    assert isinstance(p, initlab.Probe) and len(p.runs) == 4 and len(p.layers) == 4 * 4
    assert p.observations and isinstance(p.plot(), Figure) and "<table>" in p._repr_html_()
    back = initlab.load(p.save(tmp_path / "probe"))
    assert isinstance(back, initlab.Probe)
    pd.testing.assert_frame_equal(back.layers, p.layers)
    assert (tmp_path / "probe" / "probe.png").exists()

    t = initlab.transfer(source="fashion_mnist", target="mnist", pretrain_size=256, target_sizes=[64],
                         min_steps=4, seeds=1, modes=["finetune"], inits=["kaiming"], record_every=4,
                         progress=False, out=tmp_path / "transfer")
    assert isinstance(t, initlab.Transfer) and list(t.runs.init) == ["finetune", "kaiming"]
    assert (tmp_path / "transfer" / t.pretrain.checkpoint[0]).exists()     # kept with its run's records
    assert isinstance(t.plot_curves(), Figure) and isinstance(t.plot_sizes(), Figure)
    assert t.observations and "<table>" in t._repr_html_() and len(t.pretrain) == 1
    back = initlab.load(tmp_path / "transfer")
    assert isinstance(back, initlab.Transfer)
    pd.testing.assert_frame_equal(back.runs, t.runs)


# one small setting per experiment on the runner with a flat config: initlab.NAME(**settings)
FLAT_SMALL = {name: EXPERIMENTS[name].small for name in FLAT}


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(FLAT_SMALL))
def test_every_flat_experiment_has_a_python_function_that_checks_and_runs_it(name, tmp_path):
    assert EXPERIMENTS[name].small, f"{name} declares no small run"
    run = getattr(initlab, name)
    with pytest.raises(TypeError, match="unknown setting"):
        run(no_such_setting=1)
    result = run(out=tmp_path / name, progress=False, workers=1, **FLAT_SMALL[name])
    assert result.folder == tmp_path / name and not result.interrupted
    assert len(result.runs) == len(files.read_csv(tmp_path / name / "runs.csv")) > 0
    assert (tmp_path / name / "report.html").exists() and result.summary
    again = run(out=tmp_path / name, progress=False, resume=True, **FLAT_SMALL[name])   # nothing left to train
    assert again.runs.equals(result.runs)


def test_a_bad_value_for_an_experiment_function_speaks_python():
    with pytest.raises(ValueError, match=r"^steps must be a multiple of 100"):
        initlab.width(steps=150)
