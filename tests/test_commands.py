"""Every command, the same checks: ``--help`` works, a bad flag is one line and exit 2, and every
command that trains writes a whole result folder that ``initlab report`` and ``initlab runs`` read.

Parametrized over the command registry: a new command is tested here without anyone remembering to.
"""
import json

import pytest

from initlab import cli, files
from initlab.commands import COMMANDS, EXPERIMENT_COMMANDS
from initlab.experiments.catalog import EXPERIMENTS, FLAT
from initlab.options import command_line

# The smallest run of each experiment command that still trains on real data (seconds each).
SMALL_RUNS = {
    "study": ["--inits", "zeros", "kaiming", "--seeds", "1", "--train-size", "96", "--record-every", "4",
              "--workers", "1"],
    "bonus": ["--seeds", "1", "--train-size", "96", "--record-every", "4", "--workers", "1"],
    "grid": ["--inits", "zeros", "kaiming", "--activations", "relu", "--seeds", "1", "--train-size", "96",
             "--workers", "1"],
    "probe": ["--inits", "kaiming", "xavier", "--activations", "relu", "--depth", "3", "--width", "16",
              "--images", "16", "--seeds", "1"],
    "transfer": ["--from", "fashion_mnist", "--to", "mnist", "--pretrain-size", "256", "--target-sizes", "64",
                 "--min-steps", "4", "--seeds", "1", "--modes", "finetune", "--inits", "kaiming",
                 "--record-every", "4"],
    "sweep": ["GRID", "--workers", "1"],
}
# an experiment declared on the runner brings its own small run
SMALL_RUNS.update({name: [*command_line(EXPERIMENTS[name].small), "--workers", "1"] for name in FLAT})


def test_every_experiment_command_has_a_small_run_and_a_report():
    assert set(SMALL_RUNS) == set(EXPERIMENT_COMMANDS)
    assert set(EXPERIMENT_COMMANDS) - {"sweep"} == set(EXPERIMENTS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_works(name, capsys):
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: initlab {name}")


POSITIONALS = {"report": ["somewhere"], "runs": ["somewhere"], "data": ["info"]}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_bad_flag_is_one_line_and_exit_2(name, capsys):
    assert cli.main([name, *POSITIONALS.get(name, []), "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("initlab: error: ")
    assert "--no-such-flag" in err


@pytest.mark.parametrize("name", [n for n in COMMANDS if n in EXPERIMENT_COMMANDS])
def test_help_states_the_exit_codes(name, capsys):
    cli.main([name, "--help"])
    assert "exit codes: 0 every run finished" in " ".join(capsys.readouterr().out.split())


def test_help_defaults_are_the_commands_own():
    """bonus runs 10 seeds and says so; sweep's flags have plain metavars."""
    helps = {n: cli.build_parser()._subparsers._group_actions[0].choices[n].format_help()
             for n in ("bonus", "study", "sweep")}
    assert "(default 10)" in " ".join(helps["bonus"].split()).split("--seeds N number of seeds")[1][:200]
    assert "(default 3)" in " ".join(helps["study"].split()).split("--seeds N number of seeds")[1][:200]
    assert "TRAIN.LR" not in helps["sweep"] and "--lr LR" in helps["sweep"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.e2e) if n in ("criticality", "width") else n
                                  for n in SMALL_RUNS])     # (tests/test_criticality.py, test_width.py run theirs)
def test_a_small_run_writes_a_whole_result_folder(name, tmp_path, capsys):
    out = tmp_path / name
    args = list(SMALL_RUNS[name])
    if "GRID" in args:
        grid = tmp_path / "grid.toml"
        grid.write_text('inits = ["zeros", "kaiming"]\nseeds = 1\ntrain_size = 96\nrecord_every = 4\n')
        args[args.index("GRID")] = str(grid)
    assert cli.main([name, *args, "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    for f in ("config.json", "meta.json", "runs.csv", "report.html"):
        assert (out / f).stat().st_size > 0, f
    meta = json.loads((out / "meta.json").read_text())
    assert meta["experiment"] == ("study" if name == "sweep" else name)
    assert meta["environment"]["torch"]
    runs = files.read_csv(out / "runs.csv")
    assert runs and all("seed" in r for r in runs)

    (out / "report.html").unlink()
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "report.html").stat().st_size > 0
    assert "report: " in capsys.readouterr().out
    assert cli.main(["runs", str(out)]) == 0
    listing = capsys.readouterr().out
    assert str(runs[0]["seed"]) in listing


@pytest.mark.parametrize("name", ["report", "runs"])
def test_report_and_runs_refuse_a_folder_without_results(name, tmp_path, capsys):
    assert cli.main([name, str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err


def test_result_files_get_the_users_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        files.write_result(tmp_path, "study", {"a": 1}, {"runs": [{"seed": 0}]})
    finally:
        os.umask(old)
    for name in ("config.json", "meta.json", "runs.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


@pytest.mark.slow
def test_a_run_that_fails_makes_the_study_exit_1(tmp_path, capsys, monkeypatch):
    """A failure inside training (not bad input) is reported in one line per stack, and exit code 1."""
    from initlab.experiments import study

    real = study.build_and_initialize

    def fail_for_seed_1(cfg, spec, seed, *rest):
        if seed == 1:
            raise RuntimeError("simulated failure")
        return real(cfg, spec, seed, *rest)

    monkeypatch.setattr(study, "build_and_initialize", fail_for_seed_1)
    out = tmp_path / "s"
    code = cli.main(["study", "--inits", "kaiming", "--seeds", "2", "--seeds-per-stack", "1",
                     "--train-size", "96", "--record-every", "4", "--workers", "1", "--out", str(out),
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "initlab: failed: kaiming seeds [1]: RuntimeError: simulated failure" in err
    assert [r["seed"] for r in files.read_csv(out / "runs.csv")] == [0]     # what finished is written
