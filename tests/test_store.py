"""The run store: hashing, the status life cycle, claims, two writers at once, and kill -9 mid-write."""
import csv
import json
import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from initlab import files
from initlab.runs import store as st


def cell(k: int, grp: str = "g") -> dict:
    config = {"init": f"init{k % 3}", "seed": k, "lr": 0.001}
    return {"hash": st.config_hash(config), "config": st.canonical_json(config),
            "init": config["init"], "seed": k, "grp": grp}


def test_hash_depends_on_values_not_key_order():
    a = {"seed": 0, "init": "xavier", "train": {"lr": 0.001, "epochs": 1}}
    b = {"train": {"epochs": 1, "lr": 1e-3}, "init": "xavier", "seed": 0}
    assert st.canonical_json(a) == st.canonical_json(b)
    assert st.config_hash(a) == st.config_hash(b)
    assert st.config_hash(a) != st.config_hash({**a, "seed": 1})
    assert st.config_hash(a) != st.config_hash({**a, "train": {"lr": 0.002, "epochs": 1}})
    assert len(st.config_hash(a)) == 64


def test_store_is_wal_and_durable(tmp_path):
    with st.Store(tmp_path) as s:
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2          # FULL
        assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] == st.BUSY_TIMEOUT_MS
        assert s.integrity() == "ok"


def test_life_cycle_claims_and_resume(tmp_path):
    cells = [cell(k) for k in range(4)]
    with st.Store(tmp_path) as s:
        assert s.plan(cells) == {"queued": 4}
        assert s.claim([cells[0]["hash"], cells[1]["hash"]], "A") == 2
        # a finish under the wrong token changes nothing; under the right one, both at once
        assert s.finish([(cells[0]["hash"], "done", {"test_acc": 0.9}, "records/x")], "B") == 0
        assert s.finish([(cells[0]["hash"], "done", {"test_acc": 0.9}, "records/x"),
                         (cells[1]["hash"], "diverged", {"test_acc": 0.1}, "records/y")], "A") == 2
        assert s.claim([cells[0]["hash"]], "C") == 0          # final runs cannot be claimed again
        s.claim([cells[2]["hash"]], "D")
        assert s.fail([cells[2]["hash"]], "D", "boom") == 1
        s.claim([cells[3]["hash"]], "E")                        # ... and then the process dies
        assert s.counts() == {"done": 1, "diverged": 1, "failed": 1, "running": 1}
    with st.Store(tmp_path) as s:                               # a resume: same plan again
        assert s.plan(cells) == {"done": 1, "diverged": 1, "queued": 2}
        runs = {r["hash"]: r for r in s.runs()}
        assert runs[cells[0]["hash"]]["row"] == {"test_acc": 0.9}
        assert runs[cells[0]["hash"]]["attempts"] == 1
        assert runs[cells[2]["hash"]]["claim"] is None
        # a new plan without cell 0: it stays stored, off the plan
        assert s.plan(cells[1:]) == {"diverged": 1, "queued": 2}
        assert len(s.runs()) == 3 and len(s.runs(plan_only=False)) == 4
        assert s.runs(plan_only=False)[-1]["position"] is None
        # Ctrl-C of a sweep: its running runs go back to queued
        s.claim([cells[2]["hash"]], "host:1:abc:0:99")
        assert s.release("host:1:abc") == 1
        assert s.counts()["queued"] == 2


def test_transaction_rolls_back_on_error(tmp_path):
    with st.Store(tmp_path) as s:
        s.plan([cell(0)])
        with pytest.raises(RuntimeError):
            with s.transaction() as db:
                db.execute("UPDATE runs SET status = 'done'")
                raise RuntimeError("midway")
        assert s.counts() == {"queued": 1}
        with pytest.raises(ValueError):
            s.finish([(cell(0)["hash"], "finished", {}, "")], "x")  # not a status


def test_records_round_trip_atomically(tmp_path):
    tables = {"curves": [{"init": "xavier", "seed": 0, "run": 0, "step": 0, "heldout_acc": 0.1234567891,
                          "train_loss": float("nan")}],
              "layers": [], "histograms": [{"run": 0, "step": 0, "layer": "c1", "count": 3.0}]}
    rel = st.write_records(tmp_path, "abc", tables)
    assert rel == "records/abc"
    back = st.read_records(tmp_path, rel)
    assert back["curves"][0]["heldout_acc"] == pytest.approx(0.1234568, abs=1e-12)   # 7 digits, as CSV
    assert back["layers"] == [] and back["histograms"][0]["layer"] == "c1"
    assert not [p for p in (tmp_path / rel).iterdir() if p.name.endswith(".tmp")]


def _writer(out, who: int, n: int) -> None:
    """One of two processes: claim and finish its own n runs, one transaction each, and read too."""
    with st.Store(out) as s:
        for k in range(n):
            h = cell(who * 1000 + k)["hash"]
            assert s.claim([h], f"w{who}") == 1
            assert s.finish([(h, "done", {"k": k, "who": who}, f"records/{h}")], f"w{who}") == 1
            s.set_meta(**{f"last{who}": k})
            s.counts()


def test_two_processes_writing_at_once_do_not_corrupt_it(tmp_path):
    n = 150
    cells = [cell(who * 1000 + k) for who in (0, 1) for k in range(n)]
    with st.Store(tmp_path) as s:
        s.plan(cells)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), who, n)) for who in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with st.Store(tmp_path) as s:
        assert s.integrity() == "ok"
        assert s.counts() == {"done": 2 * n}
        assert sorted((r["row"]["who"], r["row"]["k"]) for r in s.runs()) == \
            sorted((who, k) for who in (0, 1) for k in range(n))
        assert s.meta("last0") == n - 1 and s.meta("last1") == n - 1


def test_kill_9_inside_a_transaction_leaves_no_trace(tmp_path):
    """A writer killed between BEGIN IMMEDIATE and COMMIT: the store is intact and holds none of it."""
    with st.Store(tmp_path) as s:
        s.plan([cell(k) for k in range(50)])
    code = textwrap.dedent(f"""
        import sys, time
        from initlab.runs import store as st
        s = st.Store({str(tmp_path)!r})
        s.db.execute("BEGIN IMMEDIATE")
        s.db.execute("UPDATE runs SET status = 'done', row = '{{}}'")
        print("inside", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "inside"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    with st.Store(tmp_path) as s:       # (this also shows the dead writer's lock is gone)
        assert s.integrity() == "ok"
        assert s.counts() == {"queued": 50}
        s.set_meta(after="kill")
        assert json.loads(json.dumps(s.meta("after"))) == "kill"


def _parse_each(path: Path) -> list:
    with open(path, newline="") as f:
        return [{k: files._parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _same(a, b) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


def test_tables_read_back_as_written_column_by_column(tmp_path):
    """read_csv parses a column at a time; every value must come back as the value-by-value parse
    gives it: ints, floats (nan, 1e-07 without a '.'), None, booleans, text that looks like a number."""
    rows = [{"run": k, "acc": v, "loss": w, "flag": k % 2 == 0, "init": name, "mixed": m, "gap": g}
            for k, (v, w, name, m, g) in enumerate([
                (0.5, 1e-07, "kaiming", 3, None), (0.25, math.nan, "normal:std=0.1", 2.5, 1.0),
                (1.0, 2.0, "12", "x", None), (0.125, -0.0, "1e3", 7, 4.25)])]
    path = tmp_path / "t.csv"
    path.write_text(files.rows_to_csv(rows))
    got, want = files.read_csv(path), _parse_each(path)
    assert [list(r) for r in got] == [list(r) for r in want]
    assert all(_same(g[k], w[k]) for g, w in zip(got, want) for k in w)
    assert [r["init"] for r in got] == ["kaiming", "normal:std=0.1", 12, 1000.0]
    assert [r["mixed"] for r in got] == [3, 2.5, "x", 7] and got[2]["acc"] == 1.0
    path.write_text("a,b\n1,2\n3\n")                          # ragged: the DictReader way
    assert files.read_csv(path) == [{"a": 1, "b": 2}, {"a": 3, "b": None}]


def _write_meta_around(out, opened, parent_closed):
    store = st.Store(out)
    store.set_meta(**{"k0": 0})
    opened.set()
    parent_closed.wait(30)
    for k in range(1, 11):
        store.set_meta(**{f"k{k}": k})
    store.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux")
def test_a_child_forked_from_a_detached_store_keeps_every_write(tmp_path):
    """A fork while the parent's connection is open leaves the child holding no SQLite locks of its
    own: when the parent closes, SQLite checkpoints and deletes the WAL under the child's writes.
    ``Store.detached`` closes the connection around the fork (as the worker pool does)."""
    ctx = mp.get_context("fork")
    opened, parent_closed = ctx.Event(), ctx.Event()
    store = st.Store(tmp_path)
    with store.detached():
        child = ctx.Process(target=_write_meta_around, args=(tmp_path, opened, parent_closed))
        child.start()
    assert opened.wait(30)
    store.close()                              # the driver ends while the worker still writes
    parent_closed.set()
    child.join(30)
    assert child.exitcode == 0
    with st.Store(tmp_path) as fresh:
        assert [fresh.meta(f"k{k}") for k in range(11)] == list(range(11))
