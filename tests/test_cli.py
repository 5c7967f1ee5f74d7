import subprocess
import sys

import pytest

from initlab import cli, files
from initlab.commands import common


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "initlab.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--inits", "zeros", "bogus"], "unknown initializer 'bogus'; choose from: "),
    (["--activation", "swish2"], "unknown activation 'swish2'; choose from: relu"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--lr=-1e-3"], "--lr must be > 0"),
    (["--seeds", "three"], "argument --seeds: invalid int value"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
    (["--config", "/nonexistent/x.toml"], "config file not found"),
    (["--workers", "-1"], "--workers must be >= 0"),
    (["--train-size", "0"], "--train-size must be >= 1"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--schedule", "cosine"], "unknown schedule 'cosine'"),
    (["--bias-init", "nan"], "--bias-init must be a finite number"),
    (["--dataset", "svhn"], "unknown dataset 'svhn'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    code = cli.main(["study", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("initlab: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "runs.csv").exists()


def test_unreadable_config_and_unknown_setting(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [1, \n")
    assert cli.main(["study", "--config", str(bad)]) == 2
    assert "cannot read config" in capsys.readouterr().err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("sedes = 3\n")
    assert cli.main(["study", "--config", str(unknown)]) == 2
    assert "unknown setting 'sedes'" in capsys.readouterr().err


def test_unwritable_out_and_existing_results(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["study", "--out", str(blocker / "sub")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
    done = tmp_path / "done"
    done.mkdir()
    (done / "runs.csv").write_text("init,seed\n")
    assert cli.main(["study", "--out", str(done)]) == 2
    assert "already holds results" in capsys.readouterr().err
    assert (done / "runs.csv").read_text() == "init,seed\n"


def test_config_file_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('inits = ["zeros", "kaiming"]\nseeds = 4\nlr = 0.002\ntrain_size = 500\n')
    args = cli.build_parser().parse_args(["study", "--config", str(toml), "--seeds", "2"])
    cfg = common.study_config(args)
    assert cfg.inits == ["zeros", "kaiming"] and cfg.seeds == 2          # the flag wins
    assert cfg.train.lr == 0.002 and cfg.train.train_size == 500


@pytest.mark.e2e
def test_study_end_to_end_from_the_command_line(tmp_path):
    out = tmp_path / "s"
    p = run_cli("study", "--inits", "zeros", "kaiming", "--seeds", "1", "--train-size", "320",
                "--out", str(out), "--quiet")
    assert p.returncode == 0, p.stderr
    assert "kaiming" in p.stdout and f"report: {out / 'report.html'}" in p.stdout
    for name in ("runs.csv", "curves.csv", "layers.csv", "histograms.csv", "config.json",
                 "report.md", "report.html"):
        assert (out / name).exists(), name
    again = run_cli("report", str(out))
    assert again.returncode == 0 and "zeros" in again.stdout


def test_help_and_other_commands(capsys):
    assert cli.main(["study", "--help"]) == 0
    assert "--inits" in capsys.readouterr().out
    assert cli.main(["summary"]) == 0
    assert "61,706" in capsys.readouterr().out
    assert cli.main(["inits"]) == 0
    assert "kaiming" in capsys.readouterr().out
    assert cli.main(["report", "/nonexistent"]) == 2


def test_ctrl_c_keeps_what_was_recorded_and_writes_the_report(tmp_path, capsys, monkeypatch):
    """Ctrl-C in the middle of training (raised where SIGINT raises it, at the 7th step, not after a
    clock): exit 130, the runs so far in runs.csv (marked interrupted, 6 steps trained), a report for
    them, and the terminal names the resume."""
    from initlab.engine import training

    real, calls = training.Stack.loss_and_grad, []

    def interrupted_at_the_seventh_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training.Stack, "loss_and_grad", interrupted_at_the_seventh_step)
    out = tmp_path / "interrupted"
    code = cli.main(["study", "--train-size", "640", "--seeds", "1", "--inits", "zeros", "kaiming", "--workers", "1",
                     "--quiet", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 130, stderr[-2000:]
    assert f"interrupted: the report covers the runs recorded before Ctrl-C; resume with initlab study " \
           f"--resume --out {out}" in stderr
    runs = files.read_csv(out / "runs.csv")
    assert {r["init"] for r in runs} == {"zeros", "kaiming"}
    assert all(r["interrupted"] and r["steps"] == 6 for r in runs)
    assert "(interrupted" in (out / "report.md").read_text()
    assert f"report: {out / 'report.html'}" in stdout


def test_bonus_and_data_bad_input_is_one_line_and_exit_2(capsys):
    assert cli.main(["bonus", "--ablation", "-1", "--out", "/tmp/initlab-never-written"]) == 2
    err = capsys.readouterr().err
    assert err == "initlab: error: --ablation must be >= 0, got -1\n"
    assert cli.main(["data", "fetch", "svhn"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab: error:") and "svhn" in err and err.count("\n") == 1
