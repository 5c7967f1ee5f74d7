"""Truth under faults: SIGTERM, a run whose process died, a read-only folder, a resume with other
settings. Each says what happened in one line, with the documented exit code, and keeps what it did."""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from store_state import statuses, wait_for

from initlab import cli, files
from initlab.runs import store as st

TINY = ["--train-size", "96", "--record-every", "4", "--seeds", "1", "--workers", "1", "--quiet"]


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.e2e
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_is_handled_as_ctrl_c_with_exit_143(workers, tmp_path):
    """What a batch scheduler sends before it kills, once the first stack is stored: exit 143, the
    finished runs kept, a stack stopped part-way kept as 'interrupted' with its partial records (one not
    started yet back in the queue), nothing left 'running', the terminal says how to resume, and the
    resume finishes the study."""
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "initlab.cli", "study", "--inits", "zeros", "kaiming", "--seeds", "4",
            "--seeds-per-stack", "1", "--train-size", "4000", "--workers", workers, "--quiet", "--out",
            str(out)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: statuses(out).get("done", 0) >= 1 or p.poll() is not None, 300)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 143, stderr[-2000:]
    counts = statuses(out)
    assert counts.get("done", 0) >= 1 and counts.get("done", 0) < 8 and not counts.get("running"), counts
    assert f"initlab study --resume --out {out}" in stderr
    assert "(interrupted" in (out / "report.md").read_text()
    with st.Store(out) as s:
        for r in s.runs():
            if r["status"] == "interrupted":
                assert 0 < r["row"]["steps"] < 125 and st.verify_records(out, r["records"]) is None
            if r["status"] == "queued":
                assert r["row"] is None
    done = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert statuses(out) == {"done": 8}


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_run_whose_process_died_is_shown_stale_and_resume_trains_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["study", "--inits", "zeros", "kaiming", "--out", out] + TINY, capsys)[0] == 0
    with st.Store(out) as s:
        s.db.execute("UPDATE runs SET status = 'running', claim = ? WHERE init = 'kaiming'",
                     (f"{socket.gethostname()}:{_dead_pid()}:dead:0",))
    code, text, _ = run_cli(["runs", out], capsys)
    assert code == 0 and " stale " in text and "2 in the plan: 1 done, 1 stale" in text
    assert "--resume trains them again" in text
    assert run_cli(["study", "--resume", "--out", out, "--quiet"], capsys)[0] == 0
    with st.Store(out) as s:
        assert {r["init"]: (r["status"], r["attempts"]) for r in s.runs()} == {"zeros": ("done", 1),
                                                                              "kaiming": ("done", 2)}
    # a run held by a live process (this one) is running, not stale
    with st.Store(out) as s:
        s.db.execute("UPDATE runs SET status = 'running', claim = ? WHERE init = 'kaiming'",
                     (f"{socket.gethostname()}:{os.getpid()}:live:0",))
    assert "1 running" in run_cli(["runs", out], capsys)[1]


@contextlib.contextmanager
def read_only_copy(folder: Path, tmp_path: Path):
    """``folder`` copied onto a read-only file system (a tmpfs remounted read-only, as root) or, for
    another user, into a folder without write permission."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
        try:
            shutil.copytree(folder, mount / folder.name)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            yield mount / folder.name
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    else:
        shutil.copytree(folder, mount / folder.name)
        for path in [mount / folder.name, *(mount / folder.name).rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield mount / folder.name
        finally:
            for path in [mount / folder.name, *(mount / folder.name).rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("command", ["study", "grid"])
def test_a_read_only_folder_is_listed_and_refused_in_one_line(command, tmp_path, capsys):
    out = tmp_path / "out"
    extra = ["--activations", "relu"] if command == "grid" else []
    assert run_cli([command, "--inits", "kaiming", "--out", out] + extra + TINY, capsys)[0] == 0
    with read_only_copy(out, tmp_path) as ro:
        assert not st.writable(ro)
        code, text, err = run_cli(["runs", ro], capsys)
        assert code == 0 and "1 in the plan: 1 done" in text and err == ""
        code, _, err = run_cli(["report", ro], capsys)
        assert code == 2 and err.count("\n") == 1 and "is read-only" in err
        code, _, err = run_cli([command, "--resume", "--out", ro], capsys)
        assert code == 2 and err.count("\n") == 1 and "cannot write to --out" in err
        assert "Read-only" in err or "Permission denied" in err


def test_resume_with_other_settings_is_refused_or_extends_when_asked(tmp_path, capsys):
    out = tmp_path / "grid"
    base = ["grid", "--inits", "kaiming", "--activations", "relu", "--out", out]
    assert run_cli(base + TINY, capsys)[0] == 0
    before = files.read_csv(out / "runs.csv")
    code, _, err = run_cli(["grid", "--resume", "--out", out, "--lr", "0.003", "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1 and "lr 0.001 -> 0.003" in err and "--extend" in err
    code, _, err = run_cli(["grid", "--resume", "--out", out, "--lr", "0.003", "--extend", "--quiet"], capsys)
    assert code == 2 and "would leave 1 stored runs out" in err
    assert files.read_csv(out / "runs.csv") == before                    # nothing replaced
    code, _, err = run_cli(["grid", "--resume", "--out", out, "--seeds", "2", "--extend", "--quiet"], capsys)
    assert code == 0, err
    rows = files.read_csv(out / "runs.csv")
    assert len(rows) == 2 and rows[0]["test_acc"] == before[0]["test_acc"]
    code, _, err = run_cli(["grid", "--out", out, "--extend"] + TINY, capsys)
    assert code == 2 and "--extend is for --resume" in err


def test_an_interrupted_probe_keeps_the_combinations_it_probed(tmp_path, capsys, monkeypatch):
    from initlab.experiments import probe

    real, calls = probe._probe_one, []

    def stop_at_the_third(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt          # what Ctrl-C raises in the middle of the third
        return real(*args)

    monkeypatch.setattr(probe, "_probe_one", stop_at_the_third)
    out = tmp_path / "probe"
    code, _, err = run_cli(["probe", "--inits", "xavier", "kaiming", "--activations", "relu", "--seeds", "2",
                            "--depth", "4", "--width", "32", "--images", "64", "--out", out, "--quiet"], capsys)
    assert code == 130 and "2 of 4 combinations probed" in err
    rows = files.read_csv(out / "probe.csv")
    assert {(r["init"], r["seed"]) for r in rows} == {("xavier", 0), ("xavier", 1)}
    report = (out / "report.md").read_text()
    assert "(interrupted)" in report and "2 of 4" in report


def test_a_study_report_draws_nothing_from_a_run_stopped_part_way(tmp_path, capsys, monkeypatch):
    """Two stacks (seed 0, then seed 1); Ctrl-C at the 5th step of the second: the finished seed makes
    every table and sentence, the partial one is listed apart and stays in runs.csv, marked."""
    from initlab.engine import training
    from initlab.experiments import study_report

    real, calls = training.Stack.loss_and_grad, []
    steps = 640 // 32

    def interrupted_in_the_second_stack(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == steps + 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(training.Stack, "loss_and_grad", interrupted_in_the_second_stack)
    out = tmp_path / "s"
    code, text, _ = run_cli(["study", "--inits", "kaiming", "--seeds", "2", "--seeds-per-stack", "1", "--train-size",
                             "640", "--workers", "1", "--quiet", "--out", out], capsys)
    assert code == 130
    runs = files.read_csv(out / "runs.csv")
    assert [(r["seed"], r["interrupted"], r["steps"]) for r in runs] == [(0, False, steps), (1, True, 4)]
    md = (out / "report.md").read_text()
    assert "kaiming seed 1: stopped after 4 steps" in md
    finished, stopped = study_report.finished_only(study_report.load(out))
    assert [r["seed"] for r in finished.runs] == [0] and [r["seed"] for r in stopped] == [1]
    assert f"{100 * runs[0]['test_acc']:.2f} % (1 seed)" in md and f"{100 * runs[1]['test_acc']:.2f}" not in md
