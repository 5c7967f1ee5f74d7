"""The runner's protocol, checked the same way for every experiment that trains on it (as scikit-learn's
``check_estimator`` checks every estimator): its flags, bad input, Ctrl-C, kill -9 and resume, the
report rebuilt from the folder, a local Ray instance. Parametrized over the experiment registry
(``catalog.STORED``) and the study, so a new experiment on the runner is checked without anyone
remembering to: one declared in its module brings its small run (``Experiment.small``), an older one has
its small command line in ``SMALL``."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from store_state import statuses, wait_for

from initlab import cli, files
from initlab.experiments.catalog import EXPERIMENTS, FLAT, STORED
from initlab.options import command_line
from initlab.runs import store as st

# a few seconds each on one core; several stacks (so that a kill lands between them), inline training
SMALL = {
    "study": ["study", "--inits", "zeros", "kaiming", "--seeds", "3", "--seeds-per-stack", "1",
              "--train-size", "640", "--record-every", "5"],
    "grid": ["grid", "--inits", "zeros", "kaiming", "--activations", "relu", "tanh", "--seeds", "2",
             "--seeds-per-stack", "1", "--train-size", "640"],
    "bonus": ["bonus", "--seeds", "2", "--ablation", "1", "--seeds-per-stack", "1", "--train-size", "640",
              "--record-every", "5"],
    "transfer": ["transfer", "--from", "fashion_mnist", "--to", "mnist", "--pretrain-size", "256", "--target-sizes",
                 "64", "128", "--min-steps", "40", "--seeds", "2", "--record-every", "4"],
}
# an experiment declared on the runner says its own small run (``Experiment.small``)
SMALL.update({name: [name, *command_line(EXPERIMENTS[name].small)] for name in FLAT})
# runs finished before one is in a table: transfer's pretraining (2 seeds) is in pretrain.csv, not runs.csv
IN_NO_TABLE = {"transfer": 2}
COMMANDS = sorted(set(STORED) | {"study"})
RUNNER_FLAGS = ("--resume", "--workers", "--threads", "--backend", "--address", "--tensorboard")


def test_every_experiment_on_the_runner_is_checked_here():
    assert set(STORED) <= set(SMALL), f"give {sorted(set(STORED) - set(SMALL))} a small command line in SMALL"
    for name in STORED:
        e = EXPERIMENTS[name]
        assert e.plan and e.collect and e.from_dict, name


def _argv(name, out, *extra):
    return [sys.executable, "-m", "initlab.cli", *SMALL[name], "--workers", "1", "--quiet", "--out",
            str(out), *extra]


def _results(out: Path) -> list:
    """A folder's runs.csv rows without their timing columns, in a fixed order."""
    rows = [{k: "nan" if v != v else v for k, v in r.items() if "seconds" not in k and k != "run"}   # (nan != nan)
            for r in files.read_csv(out / "runs.csv")]
    return sorted(rows, key=repr)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_training_command_takes_the_runner_flags(name, capsys):
    assert cli.main([name, "--help"]) == 0
    text = capsys.readouterr().out
    for flag in RUNNER_FLAGS:
        assert flag in text, (name, flag)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("bad,message", [(["--backend", "mpi"], "unknown backend 'mpi'"),
                                         (["--threads", "0"], "--threads must be >= 1"),
                                         (["--address", "h:1"], "--address is for --backend ray")])
def test_bad_runner_settings_are_one_line_and_exit_2(name, bad, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(SMALL[name][:1] + bad + ["--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab: error:") and message in err and err.count("\n") == 1, err
    assert not (out / st.STORE_NAME).exists()


@pytest.mark.e2e
@pytest.mark.parametrize("name", COMMANDS)
def test_the_report_is_rebuilt_from_the_folder_alone(name, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert cli.main(_argv(name, out)[3:]) == 0
    report = (out / "report.md").read_text()
    runs = (out / "runs.csv").read_text()
    for path in ("report.md", "report.html", "runs.csv"):
        (out / path).unlink()
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0
    assert (out / "runs.csv").read_text() == runs
    assert (out / "report.md").read_text() == report
    assert cli.main(["runs", str(out)]) == 0
    listing = capsys.readouterr().out
    with st.Store(out) as s:                       # every run of the plan listed, ablation runs included
        n = len(s.runs())
    assert f"{n} in the plan: {n} done" in listing and listing.count(" done ") == n
    assert n >= len(files.read_csv(out / "runs.csv"))


@pytest.mark.e2e
@pytest.mark.parametrize("name", COMMANDS)
def test_killed_with_sigkill_then_resumed_gives_the_uninterrupted_runs(name, tmp_path):
    """kill -9 right after the first stack is stored, then the same command with --resume: every run
    equal to an uninterrupted run's, to the bit (the stacks keep their layout), nothing trained twice."""
    ref = tmp_path / "ref"
    done = subprocess.run(_argv(name, ref), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "out"
    p = subprocess.Popen(_argv(name, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: statuses(out).get("done", 0) >= 1 or p.poll() is not None, 300)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(30)
    at_kill = statuses(out)
    assert at_kill.get("done", 0) < sum(at_kill.values()), f"everything finished before the kill: {at_kill}"
    with st.Store(out) as s:
        finished_before = {r["hash"]: r["updated"] for r in s.runs() if r["status"] in st.FINAL}
    resumed = subprocess.run(_argv(name, out, "--resume"), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _results(out) == _results(ref)
    with st.Store(out) as s:
        assert s.integrity() == "ok" and set(s.counts()) <= set(st.FINAL)
        for r in s.runs():
            if r["hash"] in finished_before:
                assert r["updated"] == finished_before[r["hash"]] and r["attempts"] == 1


@pytest.mark.e2e
@pytest.mark.parametrize("name", COMMANDS)
def test_ctrl_c_exits_130_keeps_the_finished_runs_and_marks_the_report(name, tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen(_argv(name, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = IN_NO_TABLE.get(name, 0) + 1
    assert wait_for(lambda: statuses(out).get("done", 0) >= first or p.poll() is not None, 300)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 130, stderr[-2000:]
    assert f"--resume --out {out}" in stderr
    counts = statuses(out)
    assert counts.get("done", 0) >= 1 and counts.get("done", 0) < sum(counts.values()), counts
    assert "(interrupted" in (out / "report.md").read_text()
    if name != "study":        # the study keeps its interrupted stack's partial runs, marked as such
        rows = files.read_csv(out / "runs.csv")
        assert 0 < len(rows) <= counts["done"] - IN_NO_TABLE.get(name, 0)
        assert not any(r.get("interrupted") for r in rows)


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(STORED))
def test_runs_on_a_local_ray_instance_as_on_local_workers(name, tmp_path):
    pytest.importorskip("ray")
    local = tmp_path / "local"
    assert subprocess.run(_argv(name, local), capture_output=True, timeout=600).returncode == 0
    on_ray = tmp_path / "ray"
    done = subprocess.run(_argv(name, on_ray, "--backend", "ray", "--threads", "1"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _results(on_ray) == _results(local)
