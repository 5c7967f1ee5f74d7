"""Sweeps: grids from TOML, stacks of cells, the study through the store, resume after kill -9, the
local pool and the Ray backend giving the same results."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_state import statuses, wait_for

from initlab import cli, data
from initlab.experiments import study, study_tables
from initlab.experiments import study_report as report
from initlab.experiments.study import StudyConfig
from initlab.files import read_csv
from initlab.runs import backends
from initlab.runs import store as st
from initlab.runs.cells import cell_settings, cells_of, make_cell
from initlab.runs.gridfile import read_grid
from initlab.runs.plan import plan_tasks, split_tasks
from initlab.runs.runner import run_study_stored

TINY = ["--train-size", "96", "--record-every", "4", "--quiet"]     # 3 steps per run
TEST_IMAGES = 2000   # in-process tests evaluate on the first 2,000 test images (the held-out 1,000 too)


@pytest.fixture
def small_mnist(monkeypatch):
    """Real MNIST with its test split cut to TEST_IMAGES, for everything trained in this process
    (``initlab.data.load_dataset`` patched; spawned workers would load the whole split)."""
    import dataclasses


    full = data.load_dataset("mnist")
    small = dataclasses.replace(full, test_images=full.test_images[:TEST_IMAGES],
                                test_labels=full.test_labels[:TEST_IMAGES])
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: small)
    monkeypatch.setattr(backends, "_DATASETS", {})
    return small


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------------
# Grids, cells, stacks (no training)
# --------------------------------------------------------------------------------------------------

def test_grid_is_the_cartesian_product_of_its_lists(tmp_path):
    grid = write(tmp_path / "g.toml", 'inits = ["zeros", "kaiming"]\nseeds = 2\nlr = [1e-3, 3e-3]\n'
                 'activation = ["relu", "tanh"]\ntrain-size = 500\n')
    configs = read_grid(grid)
    assert [(c.train.lr, c.activation) for c in configs] == [
        (0.001, "relu"), (0.001, "tanh"), (0.003, "relu"), (0.003, "tanh")]
    assert all(c.inits == ["zeros", "kaiming"] and c.train.train_size == 500 for c in configs)
    cells = [cell for c in configs for cell in cells_of(c)]
    assert len(cells) == 4 * 2 * 2 and len({c["hash"] for c in cells}) == 16
    assert len({c["grp"] for c in cells}) == 4                  # one group per (lr, activation)


def test_cell_tables_are_merged_over_the_top_and_expanded(tmp_path):
    grid = write(tmp_path / "g.toml", 'seeds = 1\ntrain_size = 500\n\n[[cell]]\ninit = "xavier"\n'
                 'lr = [0.001, 0.01]\n\n[[cell]]\ninits = ["kaiming", "zeros"]\noptimizer = "sgd"\n')
    configs = read_grid(grid)
    assert [(c.inits, c.train.lr, c.train.optimizer) for c in configs] == [
        (["xavier"], 0.001, "adam"), (["xavier"], 0.01, "adam"), (["kaiming", "zeros"], 0.001, "sgd")]


def test_flags_override_the_grid(tmp_path):
    grid = write(tmp_path / "g.toml", 'lr = [0.001, 0.01]\ntrain_size = 500\n')
    args = cli.build_parser().parse_args(["sweep", str(grid), "--train-size", "64", "--seeds", "2"])
    configs = read_grid(grid, args)
    assert [(c.train.train_size, c.seeds) for c in configs] == [(64, 2), (64, 2)]


@pytest.mark.parametrize("text, message", [
    ("colour = 'red'\n", "unknown setting 'colour'"),
    ("seeds = [1, 2]\n", "seeds cannot be a list"),
    ("lr = []\n", "lr = [] in"),
    ("lr = -1.0\n", "--lr must be > 0"),
    ("[[cell]]\nseeds = 3\n", "seeds is sweep-wide"),
    ("cell = 3\n", "must be a list of tables"),
    ("inits = [\n", "cannot read config"),
])
def test_bad_grids_are_one_line_usage_errors(tmp_path, capsys, text, message):
    grid = write(tmp_path / "g.toml", text)
    code, out, err = run_cli(["sweep", grid, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert message in err and err.startswith("initlab: error:") and err.count("\n") == 1


def test_bad_sweep_options_are_usage_errors(tmp_path, capsys):
    grid = write(tmp_path / "g.toml", "train_size = 96\n")
    for argv, message in [
        (["sweep", "--out", tmp_path / "o"], "give a grid file"),
        (["sweep", grid, "--resume"], "--resume needs --out"),
        (["sweep", grid, "--out", tmp_path / "o", "--backend", "slurm"], "unknown backend 'slurm'"),
        (["sweep", grid, "--out", tmp_path / "o", "--workers", "-1"], "--workers must be >= 0"),
        (["sweep", grid, "--out", tmp_path / "o", "--address", "h:1"], "--address is for --backend ray"),
        (["runs", tmp_path], "holds no run store"),
    ]:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and message in err, (argv, err)


def test_cell_hash_is_what_a_run_computes_not_how():
    a = StudyConfig(inits=["xavier"], seeds=1)
    b = StudyConfig(inits=["xavier", "zeros"], seeds=3, device="cpu", data_dir="/data",
                    seeds_per_stack=2)
    if hasattr(b, "workers"):
        b.workers = 4
    assert cells_of(a)[0]["hash"] == cells_of(b)[0]["hash"]
    a.train.lr = 0.002
    assert cells_of(a)[0]["hash"] != cells_of(b)[0]["hash"]


def stored_cells(configs, done=()):
    """Plan rows as the store returns them (config parsed), minus the cells in ``done``."""
    rows = []
    for c in configs:
        for cell in cells_of(c):
            if (cell["init"], cell["seed"], c.train.lr) not in done:
                rows.append({**cell, "config": json.loads(cell["config"])})
    return rows


def test_pending_cells_are_grouped_into_rectangular_stacks():
    configs = []
    for lr in (0.001, 0.01):
        c = StudyConfig(inits=["zeros", "xavier", "kaiming"], seeds=4)
        c.train.lr, c.train.train_size = lr, 320
        configs.append(c)
    # lr 0.001: seed 1 lacks only kaiming, seed 2 is finished; lr 0.01: nothing done
    done = {("zeros", 1, 0.001), ("xavier", 1, 0.001), ("zeros", 2, 0.001), ("xavier", 2, 0.001),
            ("kaiming", 2, 0.001)}
    pending = stored_cells(configs, done)
    tasks = plan_tasks(pending, {}, 0, {("mnist", None): 60000})
    shapes = [(t.cfg.train.lr, t.cfg.seed_list, t.cfg.inits) for t in tasks]
    assert shapes == [(0.001, [0], ["zeros", "xavier", "kaiming"]), (0.001, [1], ["kaiming"]),
                      (0.001, [3], ["zeros", "xavier", "kaiming"]),
                      (0.01, [0, 1, 2, 3], ["zeros", "xavier", "kaiming"])]
    assert sorted(h for t in tasks for h in t.flat) == sorted(c["hash"] for c in pending)
    assert all(t.steps == 10 for t in tasks)                     # 320 images / batch 32
    by_two = plan_tasks(pending, {}, 2, {})
    assert [t.cfg.seed_list for t in by_two][-2:] == [[0, 1], [2, 3]]
    for t in by_two:                                            # each cell is where its config says
        for s, seed in enumerate(t.cfg.seed_list):
            for i, spec in enumerate(t.cfg.inits):
                cell = make_cell(cell_settings(t.cfg), spec, seed)
                assert t.hashes[s][i] == cell["hash"]


def test_split_tasks_gives_every_worker_a_share():
    c = StudyConfig(inits=["zeros", "xavier", "kaiming"], seeds=1)
    tasks = plan_tasks(stored_cells([c]), {}, 0, {})
    assert len(tasks) == 1
    split = split_tasks(tasks, 2)
    assert [t.cfg.inits for t in split] == [["zeros", "xavier"], ["kaiming"]]
    assert [t.tid for t in split] == [0, 1]
    assert sorted(h for t in split for h in t.flat) == sorted(tasks[0].flat)
    assert len(split_tasks(split, 10)) == 3               # one cell per task at most


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------

def tiny_config(**kw) -> StudyConfig:
    cfg = StudyConfig(inits=["zeros", "kaiming"], seeds=2, **kw)
    cfg.train.train_size, cfg.train.record_every = 96, 4
    if hasattr(cfg, "workers"):
        cfg.workers = 1
    return cfg


TIMING = ("train_seconds", "stack_seconds", "init_seconds")


@pytest.mark.slow
def test_study_through_the_store_writes_the_tables_run_study_writes(tmp_path, small_mnist):
    ds = small_mnist
    cfg = tiny_config()
    study_tables.write_tables(tmp_path / "old", cfg, study.run_study(cfg, dataset=ds, progress=False))
    outcome = run_study_stored(cfg, tmp_path / "new", dataset=ds, progress=False)
    assert not outcome.interrupted
    for name in ("curves", "layers", "histograms", "config"):
        suffix = ".json" if name == "config" else ".csv"
        assert (tmp_path / "old" / f"{name}{suffix}").read_text() == \
            (tmp_path / "new" / f"{name}{suffix}").read_text(), name
    old, new = read_csv(tmp_path / "old" / "runs.csv"), read_csv(tmp_path / "new" / "runs.csv")
    assert [list(r) for r in old] == [list(r) for r in new]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in old] == \
        [{k: v for k, v in r.items() if k not in TIMING} for r in new]
    meta = json.loads((tmp_path / "new" / "meta.json").read_text())
    assert meta["store"]["status"] == {"done": 4} and meta["interrupted"] is False


def digest(out: Path, run: dict) -> tuple:
    files = sorted((out / run["records"]).iterdir())
    return (json.dumps(run["row"], sort_keys=True),
            tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in files))


@pytest.mark.slow
def test_study_resume_trains_only_what_is_missing(tmp_path, capsys, small_mnist, monkeypatch):
    monkeypatch.setattr(report, "make_plots", lambda f: [])     # (plots are the report's tests' job)
    out = tmp_path / "s"
    argv = ["study", "--out", out, "--inits", "zeros", "kaiming", "--seeds", "2", "--seeds-per-stack",
            "1", "--workers", "1"] + TINY
    assert run_cli(argv, capsys)[0] == 0
    assert run_cli(argv, capsys)[0] == 2                         # results there: refused
    before = (out / "runs.csv").read_text()
    with st.Store(out) as s:                                     # seed 1's stack "failed"
        runs = s.runs()
        kept = {r["hash"]: digest(out, r) for r in runs if r["seed"] == 0}
        s.db.execute("UPDATE runs SET status = 'failed' WHERE seed = 1")
    (out / "runs.csv").unlink()
    code, text, _ = run_cli(["study", "--out", out, "--resume", "--quiet"], capsys)   # stored config
    assert code == 0 and "kaiming" in text
    with st.Store(out) as s:
        runs = s.runs()
        assert s.counts() == {"done": 4}
        assert {r["seed"]: r["attempts"] for r in runs} == {0: 1, 1: 2}
        assert {r["hash"]: digest(out, r) for r in runs if r["seed"] == 0} == kept
    after = read_csv(out / "runs.csv")
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in after] == \
        [{k: v for k, v in r.items() if k not in TIMING} for r in read_csv_text(before, tmp_path)]
    # more seeds on resume: only the new seed trains; flags win over the stored config
    code, _, err = run_cli(["study", "--out", out, "--resume", "--seeds", "3"], capsys)   # never silently
    assert code == 2 and "seeds 2 -> 3" in err and "--extend" in err                          # replaced
    assert run_cli(["study", "--out", out, "--resume", "--seeds", "3", "--extend"], capsys)[0] == 0
    with st.Store(out) as s:
        assert s.counts() == {"done": 6}
        assert sorted(r["attempts"] for r in s.runs()) == [1, 1, 1, 1, 2, 2]
    code, text, _ = run_cli(["runs", out], capsys)
    assert code == 0 and "6 in the plan: 6 done" in text and text.count("done") == 7
    for name in ("runs.csv", "curves.csv", "report.html"):
        (out / name).unlink()
    code, text, _ = run_cli(["report", out], capsys)               # rebuilt from the store
    assert code == 0 and len(read_csv(out / "runs.csv")) == 6 and (out / "report.html").exists()


def read_csv_text(text: str, tmp_path: Path):
    p = tmp_path / "before.csv"
    p.write_text(text)
    return read_csv(p)


GRID = """
inits = ["zeros", "kaiming"]
seeds = 1
lr = [0.001, 0.003]
train_size = 96
record_every = 4
"""


def _children(pid: int) -> list:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.e2e
@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_with_nothing_lost(tmp_path):
    """Kill the sweep (driver) with SIGKILL three times at random moments -- while starting, right
    after runs finish, in the middle of training -- then resume: every run finished before a kill is
    kept byte for byte, none is trained twice, the grid completes and the store is intact."""
    seed = random.randrange(1 << 30)        # new kill points every run; a failure names its seed
    rng = random.Random(seed)
    grid = write(tmp_path / "grid.toml", GRID.replace('["zeros", "kaiming"]', '["kaiming"]')
                 .replace("seeds = 1", "seeds = 2"))        # 4 runs, 4 stacks for 2 workers
    out = tmp_path / "out"
    base = [sys.executable, "-m", "initlab.cli", "sweep", str(grid), "--out", str(out), "--workers",
            "2", "--quiet"]
    kept: dict = {}
    moments = []                            # run statuses at each kill
    waits = [lambda p: time.sleep(rng.uniform(0.2, 2.5)),
             lambda p: (wait_for(lambda: statuses(out).get("done", 0) >= 1 or p.poll() is not None,
                                  120), time.sleep(rng.uniform(0.0, 0.5))),
             lambda p: (wait_for(lambda: statuses(out).get("running", 0) > 0 or p.poll() is not None,
                                  120), time.sleep(rng.uniform(0.0, 1.5)))]
    for wait in waits:
        p = subprocess.Popen(base + (["--resume"] if (out / st.STORE_NAME).exists() else []),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(p)
        moments.append(statuses(out))
        kids = _children(p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        wait_for(lambda: not any(_alive(k) for k in kids), 15)
        assert not any(_alive(k) for k in kids), f"workers outlived their killed sweep (seed {seed})"
        if not (out / st.STORE_NAME).exists():
            continue
        with st.Store(out) as s:
            assert s.integrity() == "ok", f"seed {seed}"
            for r in s.runs():
                if r["status"] in st.FINAL:
                    now = digest(out, r)
                    assert kept.setdefault(r["hash"], now) == now, f"a finished run changed (seed {seed})"
    assert kept, f"no run finished before the last kill; the test proves nothing (seed {seed})"
    assert any(m.get("running") for m in moments), f"no kill landed mid-training: {moments} (seed {seed})"
    done = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"seed {seed}: {done.stderr}"
    with st.Store(out) as s:
        assert s.integrity() == "ok"
        runs = s.runs(plan_only=False)
        assert len(runs) == 4 and s.counts() == {"done": 4}
        for r in runs:
            if r["hash"] in kept:
                assert digest(out, r) == kept[r["hash"]]
                assert r["attempts"] >= 1
    assert sorted(p.name for p in (out / st.RECORDS_DIR).iterdir()) == sorted(r["hash"] for r in runs)
    table = read_csv(out / "runs.csv")
    assert len(table) == 4 and len({(r["seed"], r["lr"]) for r in table}) == 4
    assert sorted(p.name for p in (out / "groups").iterdir()) == ["lr=0.001", "lr=0.003"]
    for group in (out / "groups").iterdir():
        assert len(read_csv(group / "runs.csv")) == 2 and (group / "report.html").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_ray_backend_gives_the_local_results(tmp_path, capsys):
    pytest.importorskip("ray")
    grid = write(tmp_path / "grid.toml", GRID.replace("lr = [0.001, 0.003]", "lr = 0.003"))
    common = ["--threads", "1"] + TINY
    assert run_cli(["sweep", grid, "--out", tmp_path / "local", "--workers", "2"] + common, capsys)[0] == 0
    assert run_cli(["sweep", grid, "--out", tmp_path / "ray", "--backend", "ray"] + common, capsys)[0] == 0
    local, ray = (read_csv(tmp_path / d / "runs.csv") for d in ("local", "ray"))
    assert len(local) == len(ray) == 2
    acc = lambda rows: {(r["init"], r["seed"]): r["test_acc"] for r in rows}
    assert acc(ray).keys() == acc(local).keys()
    for key, value in acc(local).items():
        assert acc(ray)[key] == pytest.approx(value, abs=1e-6), key
    assert len(set(acc(local).values())) > 1                      # kaiming differs from zeros
    with st.Store(tmp_path / "ray") as s:
        assert s.meta("plan")["execution"]["backend"] == "ray"
        assert s.counts() == {"done": 2}


def test_cell_hashes_of_earlier_stores_are_unchanged():
    """Hashes computed by initlab 0.1.0 for the default study's cells: a store written then resumes."""
    cfg = StudyConfig()
    assert cells_of(cfg)[0]["hash"] == "9e3d76f26dc7f09bbf868aeae6eb10d6f920c83c6476561c1b9d0b4e0e4136e9"
    cfg.model = "mlp"
    assert cells_of(cfg)[1]["hash"] == "9dd3c8defc4d373b575d467812ff385bfd4357089108628b471336e85d23396a"
    cfg.depth = 30       # a setting added later changes the hash once it is set
    assert cells_of(cfg)[1]["hash"] != "9dd3c8defc4d373b575d467812ff385bfd4357089108628b471336e85d23396a"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["study", "sweep"])
def test_resume_on_a_folder_without_a_store_starts_it(command, tmp_path, capsys, small_mnist):
    """The same command, re-run after a kill at any moment (even before the store existed), finishes."""
    out = tmp_path / "fresh"
    grid = tmp_path / "g.toml"
    grid.write_text('inits = ["kaiming"]\nseeds = 1\n')
    argv = ([command] if command == "study" else [command, str(grid)]) + \
        ["--inits", "kaiming", "--seeds", "1", *TINY, "--workers", "1", "--out", str(out), "--resume"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert [r["status"] for r in st.Store(out).runs()] == ["done"]
    assert cli.main(argv) == 0                       # and again: nothing left to do, nothing retrained


def _training_workers(pid: int) -> list:
    """The driver's worker processes, forked or spawned (not multiprocessing's resource tracker)."""
    out = []
    for kid in _children(pid):
        try:
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            out.append(kid)
    return out


@pytest.mark.e2e
@pytest.mark.slow
def test_a_worker_killed_on_its_own_is_reported_and_resume_completes(tmp_path):
    """kill -9 of one worker (not the driver, as the OOM killer would): the driver names the lost stack,
    the other stacks finish, the exit code is 1, and the same command with --resume trains what was lost."""
    grid = write(tmp_path / "grid.toml", GRID.replace('["zeros", "kaiming"]', '["kaiming"]')
                 .replace("seeds = 1", "seeds = 2").replace("train_size = 96", "train_size = 12000"))
    out = tmp_path / "out"
    base = [sys.executable, "-m", "initlab.cli", "sweep", str(grid), "--out", str(out), "--workers", "2",
            "--quiet"]
    p = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # both workers hold a stack (one run each): whichever is killed, it dies mid-training
    wait_for(lambda: statuses(out).get("running", 0) >= 2 or p.poll() is not None, 180)
    workers = _training_workers(p.pid)
    assert workers and p.poll() is None, "no worker was training"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stderr[-2000:]
    assert "worker died (exit code -9)" in stderr
    counts = statuses(out)
    assert counts.get("failed", 0) >= 1 and counts.get("done", 0) >= 1, counts
    done = subprocess.run(base + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with st.Store(out) as s:
        assert s.counts() == {"done": 4} and s.integrity() == "ok"
    assert len(read_csv(out / "runs.csv")) == 4


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["edit", "delete", "truncate_sums"])
def test_a_damaged_record_file_is_found_reported_and_trained_again(damage, tmp_path, capsys, small_mnist,
                                                                   monkeypatch):
    """A finished run's record files are checked against the checksums written with them: damage is one
    line and exit 1 (never a table built from it), and --resume trains that run again, only that one."""
    monkeypatch.setattr(report, "make_plots", lambda f: [])
    out = tmp_path / "s"
    argv = ["study", "--out", out, "--inits", "zeros", "kaiming", "--seeds", "1", "--workers", "1"] + TINY
    assert run_cli(argv, capsys)[0] == 0
    with st.Store(out) as s:
        runs = {r["init"]: r for r in s.runs()}
        untouched = digest(out, runs["zeros"])
    folder = out / runs["kaiming"]["records"]
    if damage == "edit":
        text = (folder / "curves.csv").read_text()
        (folder / "curves.csv").write_text(text.replace("0.", "9.", 1))
    elif damage == "delete":
        (folder / "layers.csv").unlink()
    else:
        (folder / st.CHECKSUMS).write_text("")
    code, _, err = run_cli(["report", out], capsys)
    assert code == 1
    line = [ln for ln in err.splitlines() if ln.startswith("initlab: failed: run kaiming seed 0")]
    assert len(line) == 1 and "record files corrupt" in line[0] and "--resume" in line[0], err
    assert [r["init"] for r in read_csv(out / "runs.csv")] == ["zeros"]     # the damaged run left out
    title, *body = (out / "report.md").read_text().splitlines()
    assert "(1 run failed: not in the tables)" in title and "interrupted" not in title
    assert any(line.startswith("- kaiming seed 0: record files corrupt") for line in body)
    code, _, err = run_cli(["study", "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0, err
    with st.Store(out) as s:
        after = {r["init"]: r for r in s.runs()}
        assert s.counts() == {"done": 2}
        assert after["kaiming"]["attempts"] == 2 and after["zeros"]["attempts"] == 1
        assert digest(out, after["zeros"]) == untouched
        assert st.verify_records(out, after["kaiming"]["records"]) is None
    assert sorted(r["init"] for r in read_csv(out / "runs.csv")) == ["kaiming", "zeros"]


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_study_fails_one_stack_and_resume_completes(tmp_path, capsys, small_mnist,
                                                                            monkeypatch):
    """The second stack's record files cannot be written (ENOSPC): that stack fails in one line, exit 1,
    the first stack's results stay whole, and once there is room --resume trains only what failed."""
    import errno

    monkeypatch.setattr(report, "make_plots", lambda f: [])
    real = st.durable_write_text
    written = []

    def full_disk(path, text):
        if Path(path).parent.name not in written and len(written) >= 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        if Path(path).parent.name not in written:
            written.append(Path(path).parent.name)
        real(path, text)

    monkeypatch.setattr(st, "durable_write_text", full_disk)
    out = tmp_path / "s"
    argv = ["study", "--out", out, "--inits", "kaiming", "--seeds", "2", "--seeds-per-stack", "1",
            "--workers", "1"] + TINY
    code, _, err = run_cli(argv, capsys)
    assert code == 1, err
    failed = [ln for ln in err.splitlines() if ln.startswith("initlab: failed:")]
    assert len(failed) == 1 and "No space left on device" in failed[0], err
    with st.Store(out) as s:
        assert s.integrity() == "ok" and s.counts() == {"done": 1, "failed": 1}
        kept = {r["hash"]: digest(out, r) for r in s.runs() if r["status"] == "done"}
    assert len(read_csv(out / "runs.csv")) == 1
    monkeypatch.setattr(st, "durable_write_text", real)
    code, _, err = run_cli(["study", "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0, err
    with st.Store(out) as s:
        assert s.counts() == {"done": 2}
        assert all(digest(out, r) == kept[r["hash"]] for r in s.runs() if r["hash"] in kept)
    assert len(read_csv(out / "runs.csv")) == 2


def test_an_oserror_while_working_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from initlab.commands import data as data_command

    def unwritable(args):
        raise OSError(30, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr(data_command, "run", unwritable)
    monkeypatch.setitem(cli.COMMANDS, "data", data_command)
    code = cli.main(["data", "info"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("initlab: failed: [Errno 30] Read-only"), err


# --------------------------------------------------------------------------------------------------
# A sweep of another experiment's settings: one result folder of it per combination
# --------------------------------------------------------------------------------------------------

WIDTH_GRID = """
experiment = "width"
widths = [[16, 32]]                 # a list setting: a list of lists tries each
log2_lrs = [[-8]]
parametrizations = [["sp", "mup"]]
steps = 100
seeds = 1
coord_steps = 0
base_width = [8, 16]                # a one-value setting: a list tries each
"""


def test_a_sweep_of_an_experiment_trains_a_folder_of_it_per_combination_and_resumes(tmp_path, capsys):
    grid = tmp_path / "grid.toml"
    grid.write_text(WIDTH_GRID)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(grid), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    groups = sorted(p.name for p in (out / "groups").iterdir())
    assert groups == ["base_width=16", "base_width=8"]
    for name in groups:                       # each a whole width folder of its own, with its store
        assert st.exists(out / "groups" / name) and (out / "groups" / name / "report.html").exists()
        assert len(read_csv(out / "groups" / name / "runs.csv")) == 2 * 2
    rows = read_csv(out / "runs.csv")
    assert len(rows) == 8 and list(rows[0])[0] == "base_width" and {r["base_width"] for r in rows} == {8, 16}
    # μP equals SP at its base width: at width 16 with base 16 the two train alike
    same = {r["parametrization"]: r["train_loss"] for r in rows if r["base_width"] == 16 and r["width"] == 16}
    assert same["sp"] == pytest.approx(same["mup"], rel=0.2)
    assert "## base_width=8" in (out / "report.md").read_text()
    def stored():
        runs = {}
        for name in groups:
            with st.Store(out / "groups" / name, readonly=True) as store:
                runs[name] = [(r["hash"], r["status"], r["row"]) for r in store.runs()]
        return runs

    before = stored()
    assert cli.main(["sweep", str(grid), "--out", str(out), "--workers", "1", "--quiet", "--resume"]) == 0
    assert stored() == before
    assert read_csv(out / "runs.csv") == rows                     # nothing trained again
    capsys.readouterr()
    assert cli.main(["report", str(out)]) == 0 and read_csv(out / "runs.csv") == rows


@pytest.mark.parametrize("grid, message", [
    ('experiment = "nope"\n', "experiment 'nope' in"),
    ('experiment = "width"\nwidth = 3\n', "unknown setting 'width' of width in"),
    ('experiment = "width"\nsteps = 150\n', "steps must be a multiple of 100"),
])
def test_a_bad_experiment_grid_is_one_line_before_any_work(tmp_path, capsys, grid, message):
    path = tmp_path / "grid.toml"
    path.write_text(grid)
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()
