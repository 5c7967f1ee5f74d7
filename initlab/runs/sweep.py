"""Sweeps that scale and lose nothing: a grid of runs, trained by a pool of processes or a Ray cluster,
with every finished run kept in the output folder's run store (``initlab.store``).

A *cell* is one run (one init x one seed x the rest of the settings). Cells that share everything but
init and seed are trained together as one engine stack (``study.run_study`` on a sub-config), so a
stack is the unit of work a worker takes: it trains, writes each run's record files, then marks all of
the stack's runs done in one transaction. The report's tables (runs.csv, curves.csv, layers.csv,
histograms.csv) are always rebuilt from the store and the record files, so ``report.write_report(DIR)``
works on a sweep folder as on a study folder, and a resume after ``kill -9`` only trains what is missing.

    initlab sweep grid.toml --out runs/g --workers 2        # local processes
    initlab sweep grid.toml --out runs/g --backend ray --address HEAD:6379
    initlab sweep --out runs/g --resume                      # after a crash: finish the grid
    initlab runs runs/g                                      # status of every run

A grid is a TOML file of study settings (the ``initlab study`` flag names with ``_``): a list value
means "try each" and the cells are the cartesian product; ``[[cell]]`` tables list combinations
explicitly (each merged over the top-level settings, and expanded the same way). ``seeds``,
``first_seed``, ``seeds_per_stack``, ``data_dir`` and ``device`` are sweep-wide.

Parallelism: each local worker is a fresh (spawned) process with ``cores // workers`` torch threads, so
the machine is not oversubscribed. In a sweep, ``seeds_per_stack = 0`` means one seed per stack (all
inits of that seed share its data order), which gives a grid of n seeds at least n units of work.
"""
from __future__ import annotations

import argparse
import itertools
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from initlab.data import DATASETS
from initlab.runs import store as st
from initlab.options import STUDY_FLAGS, UsageError, configure, read_toml
from initlab.engine import TrainConfig
from initlab.experiments.study import StudyConfig
from initlab.experiments.study import balance
from initlab.engine import steps_for
from initlab import data
from initlab.experiments import study
from initlab import engine
from initlab.engine.tensorboard import gradient_histograms
from initlab.engine import tensorboard as tb
from initlab import files
from initlab.document import html_table, md_table
from initlab.files import atomic_write_text, rows_to_csv
from initlab.experiments import study_report as report
from initlab.files import atomic_write_text

# settings that say how or where runs are trained, not what a run is: not part of a cell's hash
NOT_IN_CELL = ("inits", "seeds", "first_seed", "data_dir", "device", "seeds_per_stack", "workers")
# fields added to StudyConfig after run stores were first written, with their defaults: left out of a
# cell's hash while at the default, so the hashes of earlier stores (and their resumes) stay valid
ADDED_LATER = {"width": None, "depth": None, "conv": False}
SWEEP_WIDE = ("seeds", "first_seed", "seeds_per_stack", "data_dir", "device")
BACKENDS = ("local", "ray")


# --------------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------------

def cell_settings(cfg) -> dict:
    """A StudyConfig's settings that change what a run computes (every field but NOT_IN_CELL, so a
    field added to StudyConfig or TrainConfig later is part of the hash without anyone remembering)."""
    from dataclasses import asdict

    d = asdict(cfg)
    for key in NOT_IN_CELL:
        d.pop(key, None)
    for key, default in ADDED_LATER.items():     # at its default, a newer field leaves the hash alone
        if d.get(key, default) == default:
            d.pop(key, None)
    return d


def make_cell(settings: dict, init: str, seed: int) -> dict:
    config = {**settings, "init": init, "seed": seed}
    text = st.canonical_json(config)
    return {"hash": st.config_hash(config), "config": text, "init": init, "seed": seed,
            "grp": st.config_hash(settings)}


def cells_of(cfg) -> List[dict]:
    """The cells of a study config: seed-major, init-minor (the order ``run_study`` numbers runs)."""
    settings = cell_settings(cfg)
    return [make_cell(settings, spec, seed) for seed in cfg.seed_list for spec in cfg.inits]


def settings_of(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("init", "seed")}


def flatten(settings: dict) -> Dict[str, object]:
    """{"model": ..., "lr": ...}: nested train settings by their leaf name."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(value)
        else:
            out[key] = value
    return out


def varied_settings(configs: Sequence[dict]) -> Dict[str, list]:
    """{leaf name: [values in first-seen order]} for the settings (besides init and seed) that differ
    between the given cell configs."""
    seen: Dict[str, list] = {}
    for config in configs:
        for key, value in flatten(settings_of(config)).items():
            values = seen.setdefault(key, [])
            if value not in values:
                values.append(value)
    return {k: v for k, v in seen.items() if len(v) > 1}


def variant(config: dict, varied: Dict[str, list]) -> str:
    """'lr=0.01 train_size=2000': the varied settings of one cell ('' when nothing varies)."""
    flat = flatten(settings_of(config))
    return " ".join(f"{k}={flat.get(k)}" for k in varied)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


def tb_name(config: dict, varied: Dict[str, list]) -> str:
    """A run's TensorBoard folder under DIR/tb: [variant/]init/seedK."""
    parts = ([slug(variant(config, varied))] if varied else []) + [slug(config["init"]),
                                                                   f"seed{config['seed']}"]
    return "/".join(parts)


# --------------------------------------------------------------------------------------------------
# Grids from TOML
# --------------------------------------------------------------------------------------------------

def read_grid(path: Path, args: Optional[argparse.Namespace] = None) -> list:
    """The validated StudyConfigs of a grid file, one per combination of its list-valued settings;
    study flags in ``args`` override the file (as for ``initlab study --config``)."""

    doc = dict(read_toml(path))
    entries = doc.pop("cell", None)
    known = {f.key: f.dest for f in STUDY_FLAGS}

    def norm(table: dict, where: str) -> dict:
        out = {}
        for key, value in table.items():
            key = key.replace("-", "_")
            if key == "init":                      # [[cell]] init = "xavier" reads naturally
                key, value = "inits", value if isinstance(value, list) else [value]
            if key not in known:
                raise UsageError(f"unknown setting {key!r} in {where}; valid: "
                                 f"{', '.join(sorted(known))}, [[cell]]")
            out[key] = value
        return out

    if entries is not None and not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise UsageError(f"'cell' in {path} must be a list of tables ([[cell]])")
    base = norm(doc, str(path))
    flags = {f.dest: vars(args)[f.dest] for f in STUDY_FLAGS if args and f.dest in vars(args)}
    combos = []
    for k, entry in enumerate(entries or [{}]):
        e = norm(entry, f"{path} [[cell]] #{k + 1}")
        wide = [key for key in e if key in SWEEP_WIDE]
        if wide:
            raise UsageError(f"{wide[0]} is sweep-wide: set it at the top of {path}, not in [[cell]]")
        merged = {**base, **e}
        axes = [key for key, v in merged.items() if isinstance(v, list) and key != "inits"]
        for key in axes:
            if key in SWEEP_WIDE:
                raise UsageError(f"{key} cannot be a list in {path}: it is sweep-wide")
            if not merged[key]:
                raise UsageError(f"{key} = [] in {path}: give at least one value")
        for values in itertools.product(*(merged[a] for a in axes)):
            combos.append({**merged, **dict(zip(axes, values))})
    configs = []
    for combo in combos:
        ns = argparse.Namespace(config=None, **{known[k]: v for k, v in combo.items()})
        for dest, value in flags.items():
            setattr(ns, dest, value)
        configs.append(configure(ns, StudyConfig(), STUDY_FLAGS, study.validate))
    return configs


# --------------------------------------------------------------------------------------------------
# Tasks: one engine stack of cells
# --------------------------------------------------------------------------------------------------

@dataclass
class Task:
    tid: int
    cfg: object                          # StudyConfig: the stack's inits and contiguous seed range
    hashes: List[List[str]]              # [seed][init], the cells it trains
    steps: int                           # training steps of each run (x size = the bar's model-steps)
    tb_names: Optional[Dict[str, str]] = None    # hash -> TensorBoard folder under DIR/tb, if asked

    @property
    def flat(self) -> List[str]:
        return [h for row in self.hashes for h in row]

    @property
    def size(self) -> int:
        return len(self.flat)


def config_for(settings: dict, inits: Sequence[str], seeds: Sequence[int], options: dict):
    """The StudyConfig that trains ``inits`` x ``seeds`` (contiguous) with ``settings``."""
    import dataclasses


    s = dict(settings)
    train = s.pop("train", {})
    t_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    c_fields = {f.name for f in dataclasses.fields(StudyConfig)}
    cfg = StudyConfig(**{k: v for k, v in s.items() if k in c_fields},
                      train=TrainConfig(**{k: v for k, v in train.items() if k in t_fields}),
                      inits=list(inits), seeds=len(seeds), first_seed=seeds[0],
                      data_dir=options.get("data_dir"), device=options.get("device", "auto"),
                      seeds_per_stack=0)
    if "workers" in c_fields:
        cfg.workers = 1         # a task is one stack, trained in the process that took it
    return cfg


def split_tasks(tasks: List[Task], workers: int) -> List[Task]:
    """Cut the tasks with ``study.balance`` so that ``workers`` processes, each taking the next task
    when it is free, finish close together; largest first, renumbered."""
    import copy


    out = []
    for k, rows, cols in balance([(len(t.hashes), len(t.hashes[0])) for t in tasks], workers):
        t = tasks[k]
        if (rows.stop - rows.start, cols.stop - cols.start) == (len(t.hashes), len(t.hashes[0])):
            out.append(t)
            continue
        cfg = copy.deepcopy(t.cfg)
        seeds = t.cfg.seed_list[rows]
        cfg.inits, cfg.first_seed, cfg.seeds = t.cfg.inits[cols], seeds[0], len(seeds)
        out.append(Task(0, cfg, [row[cols] for row in t.hashes[rows]], t.steps, t.tb_names))
    for k, t in enumerate(out):
        t.tid = k
    return out


def plan_tasks(pending: Sequence[dict], options: dict, per_stack: int,
               train_sizes: Dict[tuple, int], tensorboard: bool = False,
               varied: Optional[Dict[str, list]] = None) -> List[Task]:
    """Group pending cells (store rows: hash, config, init, seed, grp) into stacks: cells of one group
    whose seeds are consecutive and pending for the same inits, at most ``per_stack`` seeds each
    (0 = no limit). ``train_sizes[(dataset, data_dir)]`` is the number of training images."""

    by_group: Dict[str, Dict[int, List[dict]]] = {}
    for c in pending:
        by_group.setdefault(c["grp"], {}).setdefault(c["seed"], []).append(c)
    tasks: List[Task] = []
    for grp, seeds in by_group.items():
        chunks: List[List[List[dict]]] = []
        for seed in sorted(seeds):
            row = seeds[seed]
            last = chunks[-1] if chunks else None
            if (last and last[-1][0]["seed"] == seed - 1
                    and [c["init"] for c in last[-1]] == [c["init"] for c in row]
                    and (per_stack <= 0 or len(last) < per_stack)):
                last.append(row)
            else:
                chunks.append([row])
        for chunk in chunks:
            config = chunk[0][0]["config"]
            cfg = config_for(settings_of(config), [c["init"] for c in chunk[0]],
                             [row[0]["seed"] for row in chunk], options)
            n = cfg.train.train_size or train_sizes.get((cfg.dataset, cfg.data_dir),
                                                        DATASETS.get(cfg.dataset).train_size)
            n = min(n, train_sizes.get((cfg.dataset, cfg.data_dir), n))
            tasks.append(Task(tid=len(tasks), cfg=cfg, hashes=[[c["hash"] for c in row] for row in chunk],
                              steps=steps_for(n, cfg.train),
                              tb_names={c["hash"]: tb_name(c["config"], varied or {})
                                        for row in chunk for c in row} if tensorboard else None))
    return tasks


# --------------------------------------------------------------------------------------------------
# Running one task (in any process) and committing its result (where the store is)
# --------------------------------------------------------------------------------------------------

_DATASETS: Dict[tuple, object] = {}   # per process: a worker loads each dataset once


def dataset(name: str, data_dir: Optional[str]):
    key = (name, data_dir)
    if key not in _DATASETS:
        _DATASETS[key] = data.load_dataset(name, data_dir, quiet=True)
    return _DATASETS[key]


@dataclass
class CellResult:
    hash: str
    row: dict                                   # its runs.csv row
    tables: Dict[str, List[dict]]               # curves / layers / histograms rows
    grads: Optional[Dict[str, dict]] = None     # gradient histograms at init (TensorBoard)


@dataclass
class TaskResult:
    tid: int
    cells: List[CellResult]
    interrupted: bool
    dataset: str
    majority: tuple                              # (share of the most common test label, label)
    host: str = field(default_factory=socket.gethostname)


def run_task(task: Task, progress: Optional[Callable[[int], None]] = None,
             tensorboard: bool = False) -> TaskResult:
    """Train one task's stack with ``study.run_study`` and split its rows per cell."""
    cfg = task.cfg
    ds = dataset(cfg.dataset, cfg.data_dir)
    res = study.run_study(cfg, dataset=ds, progress=progress if progress is not None else False)
    where = {(spec, seed): task.hashes[s][i] for s, seed in enumerate(cfg.seed_list)
             for i, spec in enumerate(cfg.inits)}
    run_hash = {r["run"]: where[(r["init"], r["seed"])] for r in res.runs}
    cells = {h: CellResult(h, r, {name: [] for name in st.RECORD_TABLES})
             for r in res.runs for h in [run_hash[r["run"]]]}
    for name, rows in (("curves", res.curves), ("layers", res.layers), ("histograms", res.hists)):
        for r in rows:
            cells[run_hash[r["run"]]].tables[name].append(r)
    if tensorboard and not res.interrupted:
        grads = initial_gradients(task)
        for h, g in grads.items():
            if h in cells:
                cells[h].grads = g
    return TaskResult(task.tid, [cells[h] for h in task.flat if h in cells], res.interrupted,
                      cfg.dataset, (res.majority_share, res.majority_label))


def initial_gradients(task: Task) -> Dict[str, Dict[str, dict]]:
    """{hash: {layer: histogram}} of each run's weight gradients at initialization on its first
    training batch (the batch and weights of the engine's step 0; rebuilt from the seed)."""

    cfg = task.cfg
    ds = dataset(cfg.dataset, cfg.data_dir)
    x_train = engine.to_float_images(ds.train_images, cfg.train.normalize, "cpu", ds.mean, ds.std)
    out = {}
    for s, seed in enumerate(cfg.seed_list):
        idx = engine.data_order(len(x_train), seed, cfg.train.epochs,
                                cfg.train.train_size)[: cfg.train.batch_size]
        for i, spec in enumerate(cfg.inits):
            model = study.build_initialized(cfg, spec, seed, x_train)
            out[task.hashes[s][i]] = gradient_histograms(model, x_train[idx], ds.train_labels[idx],
                                                         cfg.train.label_smoothing)
    return out


def status_of(result: TaskResult, cell: CellResult) -> str:
    if result.interrupted:
        return "interrupted"
    return "diverged" if cell.row.get("diverged") else "done"


def commit(out: Path, store: st.Store, task: Task, result: TaskResult, token: str) -> Dict[str, int]:
    """Write every run's record files (and TensorBoard events), then mark the stack's runs finished in
    one transaction. Returns {status: count}."""
    finished = []
    for cell in result.cells:
        rel = st.write_records(out, cell.hash, cell.tables)
        if task.tb_names is not None:

            tb.write_run(Path(out) / tb.TB_DIR / task.tb_names[cell.hash], cell.tables["curves"],
                         cell.tables["layers"], cell.tables["histograms"], cell.row, cell.grads)
        finished.append((cell.hash, status_of(result, cell), cell.row, rel))
    store.set_meta(**{f"majority:{result.dataset}": list(result.majority)})
    store.finish(finished, token)
    missing = [h for h in task.flat if h not in {c.hash for c in result.cells}]
    if missing:
        store.release_hashes(missing, token)
    counts: Dict[str, int] = {}
    for _, status, _, _ in finished:
        counts[status] = counts.get(status, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------------
# Backends. Each calls on_step(n) as training advances and on_done(task, counts | None, error).
# --------------------------------------------------------------------------------------------------

def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


def run_inline(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
               tensorboard: bool = False) -> bool:
    """Train the tasks one after another in this process (``initlab study``). Returns True when
    Ctrl-C stopped it (the interrupted stack's runs are kept as 'interrupted', as the study did)."""
    for task in tasks:
        token = f"{session}:{task.tid}"
        store.claim(task.flat, token)
        result = run_task(task, progress=on_step, tensorboard=tensorboard)
        on_done(task, commit(out, store, task, result, token), None)
        if result.interrupted:
            return True
    return False


class _Ticker:
    """A worker's progress callback: batches step counts into queue messages (every 0.25 s), and ends
    the worker if its parent died (kill -9 of the sweep leaves no orphan training on)."""

    def __init__(self, outbox, parent: int) -> None:
        self.outbox, self.parent, self.n, self.t = outbox, parent, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.n += n
        if time.monotonic() - self.t > 0.25:
            self.flush()

    def flush(self) -> None:
        if os.getppid() != self.parent:
            os._exit(1)
        if self.n:
            self.outbox.put(("step", os.getpid(), self.n))
        self.n, self.t = 0, time.monotonic()


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass       # elsewhere the ticker's getppid check does it at the next progress flush


def _worker_main(inbox, outbox, out: str, threads: int, parent: int, session: str,
                 tensorboard: bool) -> None:
    """A local worker: say "ready", take the task the driver sends (None: stop), train it, write its
    records, mark its runs done in the store; repeat."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the driver handles Ctrl-C and stops us
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    store = st.Store(Path(out))
    ticker = _Ticker(outbox, parent)
    pid = os.getpid()
    while True:
        outbox.put(("ready", pid))
        while True:
            try:
                task = inbox.get(timeout=1.0)
                break
            except queue.Empty:
                ticker.flush()                     # (exits if the driver is gone)
        if task is None:
            break
        token = f"{session}:{task.tid}:{pid}"
        store.claim(task.flat, token)
        try:
            result = run_task(task, progress=ticker, tensorboard=tensorboard)
            counts = commit(Path(out), store, task, result, token)
            ticker.flush()
            outbox.put(("done", pid, task.tid, counts, None))
        except Exception as e:          # one bad stack must not end the sweep
            store.fail(task.flat, token, _one_line(e))
            outbox.put(("done", pid, task.tid, None, _one_line(e)))
    store.close()


def run_local(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
              workers: int, threads: int, tensorboard: bool = False) -> None:
    """A pool of ``workers`` spawned processes; the driver hands each idle worker the next task, so it
    always knows who holds what. A worker that dies (killed, out of memory) fails its stack and is
    replaced; Ctrl-C stops every worker and puts the runs they held back to queued."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")       # fresh interpreters: no forked torch thread pools
    outbox = ctx.Queue()
    todo = list(tasks)
    by_id = {t.tid: t for t in tasks}
    procs: Dict[int, tuple] = {}        # pid -> (process, its inbox)
    held: Dict[int, int] = {}           # pid -> task id
    left = set(by_id)
    replacements = len(tasks)

    def start() -> None:
        inbox = ctx.Queue()
        p = ctx.Process(target=_worker_main, daemon=True,
                        args=(inbox, outbox, str(out), threads, os.getpid(), session, tensorboard))
        p.start()
        procs[p.pid] = (p, inbox)

    try:
        for _ in range(max(1, min(workers, len(tasks)))):
            start()
        checked = time.monotonic()
        while left:
            try:
                msg = outbox.get(timeout=0.5)
            except queue.Empty:
                msg = None
            if msg is not None:
                kind, pid = msg[0], msg[1]
                if kind == "step":
                    on_step(msg[2])
                elif kind == "ready" and pid in procs:
                    task = todo.pop(0) if todo else None
                    if task is not None:
                        held[pid] = task.tid
                    procs[pid][1].put(task)
                elif kind == "done":
                    held.pop(pid, None)
                    if msg[2] in left:
                        left.discard(msg[2])
                        on_done(by_id[msg[2]], msg[3], msg[4])
                if time.monotonic() - checked < 1.0:
                    continue
            checked = time.monotonic()
            for pid, (p, _) in list(procs.items()):
                if p.is_alive():
                    continue
                procs.pop(pid)[1].close()
                tid = held.pop(pid, None)
                if tid is not None and tid in left:
                    error = f"worker died (exit code {p.exitcode})"
                    store.fail(by_id[tid].flat, f"{session}:{tid}:{pid}", error)
                    left.discard(tid)
                    on_done(by_id[tid], None, error)
                if todo and replacements > 0:
                    replacements -= 1
                    start()
            if left and not procs:
                raise RuntimeError("every sweep worker died; see the errors above")
        for p, inbox in procs.values():      # all done: let every worker finish on its own
            inbox.put(None)
        for p, _ in procs.values():
            p.join(timeout=30)
    finally:
        for p, _ in procs.values():
            if p.is_alive():
                p.terminate()
        for p, inbox in procs.values():
            p.join(timeout=10)
            inbox.close()
        outbox.close()
        store.release(session)


def run_ray(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
            threads: int, address: Optional[str], tensorboard: bool = False) -> None:
    """The same tasks as Ray tasks (``threads`` CPUs each). The workers only train and return rows;
    this process writes the record files and the store. Without ``address`` (and no RAY_ADDRESS)
    Ray starts a local instance for the duration of the sweep."""
    import ray

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, logging_level="WARNING")
        else:
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        remote = ray.remote(_ray_task).options(num_cpus=threads, max_retries=0)
        pending = {}
        for task in tasks:
            token = f"{session}:{task.tid}"
            store.claim(task.flat, token)
            pending[remote.remote(task, threads, tensorboard)] = (task, token)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    task, token = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as e:
                        store.fail(task.flat, token, _one_line(e))
                        on_done(task, None, _one_line(e))
                        continue
                    on_step(task.steps * task.size)
                    on_done(task, commit(out, store, task, result, token), None)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        store.release(session)
        if started:
            ray.shutdown()


def _ray_task(task: Task, threads: int, tensorboard: bool) -> TaskResult:
    import torch

    torch.set_num_threads(threads)
    return run_task(task, tensorboard=tensorboard)


# --------------------------------------------------------------------------------------------------
# Tables and reports, rebuilt from the store
# --------------------------------------------------------------------------------------------------

def _reindex(row: dict, run: int, init: str, seed: int) -> dict:
    """The row with its global run index and the store's init/seed, keys in their original order."""
    fix = {"run": run, "init": init, "seed": seed}
    return {k: fix.get(k, v) for k, v in row.items()}


def assemble(out: Path, runs: Sequence[dict], label: Callable[[dict], str] = lambda r: r["init"],
             extra: Callable[[dict], dict] = lambda r: {}) -> Dict[str, List[dict]]:
    """runs / curves / layers / histograms tables of finished store rows (numbered in plan order).
    Record rows are sorted by (step, layer, run): the order a single stack of all runs writes."""
    tables: Dict[str, List[dict]] = {"runs": [], "curves": [], "layers": [], "histograms": []}
    layer_order: Dict[str, int] = {}
    for k, r in enumerate(runs):
        row = _reindex(r["row"], k, label(r), r["seed"])
        row.update(extra(r))
        tables["runs"].append(row)
        for name, rows in st.read_records(out, r["records"]).items():
            for x in rows:
                tables[name].append(_reindex(x, k, label(r), r["seed"]))
                if "layer" in x:
                    layer_order.setdefault(x["layer"], len(layer_order))
    tables["curves"].sort(key=lambda x: (x["step"], x["run"]))
    for name in ("layers", "histograms"):
        tables[name].sort(key=lambda x: (x["step"], layer_order.get(x.get("layer"), 0), x["run"]))
    return tables


def group_config(runs: Sequence[dict], options: dict) -> dict:
    """config.json of a set of cells that share their settings: StudyConfig's fields, the inits in
    plan order and the seeds they cover."""
    import copy

    settings = copy.deepcopy(settings_of(runs[0]["config"]))
    inits = list(dict.fromkeys(r["init"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    return {"inits": inits, "seeds": len(seeds), "first_seed": seeds[0], **settings,
            "data_dir": options.get("data_dir"), "device": options.get("device", "auto"),
            "seeds_per_stack": options.get("seeds_per_stack", 0), "seed_list": seeds}


def _write_folder(folder: Path, config: dict, meta: dict, tables: Dict[str, List[dict]]) -> None:
    files.write_result(folder, "study", config,
                       {name: tables[name] for name in ("curves", "layers", "histograms", "runs")}, meta)


def rebuild(out: Path) -> dict:
    """Rewrite DIR's tables (and, for a sweep that varies more than init and seed, one study folder
    per setting combination under DIR/groups/) from the store and the record files. Returns
    {"kind", "varied", "groups": [(variant, folder, finished runs)], "counts", "interrupted",
    "finished"}."""
    out = Path(out)
    with st.Store(out) as store:
        plan = store.meta("plan", {})
        env = store.meta("environment", {})
        runs = store.runs()
        counts = store.counts()
        majority = store.meta_with_prefix("majority:")     # {dataset: [share, label]}
    options = plan.get("options", {})
    finished = [r for r in runs if r["status"] in st.HAS_RECORDS and r["row"] and r["records"]]
    incomplete = any(r["status"] not in st.FINAL for r in runs)
    varied = varied_settings([r["config"] for r in runs])
    finished_hashes = {r["hash"] for r in finished}

    def meta_for(rs) -> dict:
        share, label = majority.get(rs[0]["config"]["dataset"] if rs else None, [float("nan"), -1])
        return {"environment": env, "interrupted": incomplete, "majority_share": share,
                "majority_label": label,
                "store": {"file": st.STORE_NAME, "status": counts, **plan.get("execution", {})}}

    info = {"kind": plan.get("kind", "sweep"), "varied": varied, "groups": [], "counts": counts,
            "interrupted": incomplete, "finished": len(finished)}
    if not varied:
        config = plan["study"] if plan.get("kind") == "study" and "study" in plan else \
            (group_config(finished or runs, options) if runs else {})
        _write_folder(out, config, meta_for(finished), assemble(out, finished))
        return info
    # a sweep over more than init and seed: the top folder labels each run "init k=v ..."
    label = lambda r: f"{r['init']} {variant(r['config'], varied)}"
    extra = lambda r: {"spec": r["init"], **{k: flatten(settings_of(r["config"])).get(k) for k in varied
                                             if k not in r["row"]}}
    config = {"sweep": {"varied": varied, "cells": len(runs), "finished": len(finished)},
              "inits": [label(r) for r in dict((label(r), r) for r in runs).values()],
              **{k: v for k, v in group_config(runs, options).items() if k != "inits"}}
    for key in varied:                   # a varied setting has no single value at the top
        config.pop(key, None)
        config.get("train", {}).pop(key, None)
    _write_folder(out, config, meta_for(finished), assemble(out, finished, label, extra))
    groups: Dict[str, List[dict]] = {}
    for r in runs:
        groups.setdefault(r["grp"], []).append(r)
    for rs in groups.values():
        name = variant(rs[0]["config"], varied)
        done = [r for r in rs if r["hash"] in finished_hashes]
        folder = out / "groups" / slug(name)
        if done:
            _write_folder(folder, group_config(rs, options), meta_for(done), assemble(out, done))
        info["groups"].append((name, folder, len(done)))
    current = {folder.name for _, folder, n in info["groups"] if n}
    for folder in (out / "groups").glob("*"):       # groups of an earlier plan (still in the store)
        if folder.name not in current and (folder / "config.json").exists():
            shutil.rmtree(folder)
    return info


def write_reports(out: Path, info: dict, title: str = "initlab sweep") -> Path:
    """report.md / report.html for DIR: the study report, or for a varied sweep one study report per
    group plus an index with every group's summary. Returns the top HTML path."""
    import html


    out = Path(out)
    if not info["varied"]:
        return report.write_report(out, title=title)
    links = []
    for name, folder, n in info["groups"]:
        if n:
            report.write_report(folder, title=f"{title}: {name}")
            links.append((name, folder.relative_to(out)))
    head, body = report.summary_table(report.load(out))
    varied = ", ".join(f"{k} in {v}" for k, v in info["varied"].items())
    note = " (incomplete: only the finished runs)" if info["interrupted"] else ""
    md = [f"# {title}{note}", "", f"Varied: {varied}. {info['finished']} finished runs; counts by status: "
          f"{info['counts']}.", "", "## Results", "", md_table(head, body), "", "## Groups", ""]
    md += [f"- [{name}]({rel / 'report.md'})" for name, rel in links] + [""]
    atomic_write_text(out / "report.md", "\n".join(md))
    parts = [f"<h1>{html.escape(title + note)}</h1>", f"<p>Varied: {html.escape(varied)}.</p>",
             "<h2>Results</h2>", html_table(head, body), "<h2>Groups</h2><ul>"]
    parts += [f"<li><a href='{html.escape(str(rel / 'report.html'))}'>{html.escape(name)}</a></li>"
              for name, rel in links]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body>{''.join(parts)}</ul></body></html>")
    atomic_write_text(out / "report.html", page)
    return out / "report.html"


# --------------------------------------------------------------------------------------------------
# Orchestration shared by `initlab study` and `initlab sweep`
# --------------------------------------------------------------------------------------------------

def new_session() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def open_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse to mix runs into a folder by accident: a store there needs --resume (continue) or --force
    (start over: the store, records and TensorBoard files are deleted)."""

    out = Path(out)
    if resume:
        if not st.exists(out):
            raise UsageError(f"--out {out} holds no run store to resume (no {st.STORE_NAME})")
        return
    if st.exists(out) or (out / "runs.csv").exists():
        if not force:
            raise UsageError(f"--out {out} already holds runs; pass --resume to continue them or "
                             f"--force to start over")
        for name in (st.STORE_NAME, st.STORE_NAME + "-wal", st.STORE_NAME + "-shm"):
            (out / name).unlink(missing_ok=True)
        for name in (st.RECORDS_DIR, "tb", "groups"):
            shutil.rmtree(out / name, ignore_errors=True)


def train_sizes(cells: Sequence[dict], options: dict, required: bool = True) -> Dict[tuple, int]:
    """{(dataset, data_dir): number of training images}; loading is cheap once cached. Missing data is
    a usage error unless not ``required`` (a Ray cluster's nodes may have data this machine lacks)."""

    sizes = {}
    where = options.get("data_dir")
    for name in dict.fromkeys(c["config"]["dataset"] for c in cells):
        try:
            sizes[(name, where)] = len(dataset(name, where).train_images)
        except data.DataError as e:
            if required:
                raise UsageError(str(e)) from None
    return sizes


def _pending(store: st.Store) -> List[dict]:
    return [r for r in store.runs() if r["status"] not in st.FINAL]


def run_study_stored(cfg, out: Path, dataset=None, progress: bool = True, resume: bool = False,
                     force: bool = False, tensorboard: bool = False, title: str = "initlab study"):
    """``initlab study`` through the store: train the study's missing cells in stacks of
    ``seeds_per_stack`` seeds (split further until each of ``cfg.workers`` processes has one, as
    ``run_study`` does; one worker trains in this process), then rebuild the tables from the store.
    Returns an object with ``interrupted`` (Ctrl-C) and ``info`` (see ``rebuild``)."""
    from tqdm import tqdm


    out = Path(out)
    open_out(out, resume, force)
    if dataset is not None:
        _DATASETS[(cfg.dataset, cfg.data_dir)] = dataset
    cells = cells_of(cfg)
    options = {"data_dir": cfg.data_dir, "device": cfg.device, "seeds_per_stack": cfg.seeds_per_stack}
    workers = study.processes(cfg.workers, len(cells), study.resolve_device(cfg.device))
    threads = max(1, cores() // workers)
    with st.Store(out) as store:
        store.plan(cells, plan={"kind": "study", "title": title, "study": study.config_dict(cfg),
                                "options": options,
                                "execution": {"backend": "inline" if workers == 1 else "local",
                                              "workers": workers}},
                   environment={**files.environment(), **({"cpu_threads": threads} if workers > 1 else {})})
        pending = _pending(store)
        sizes = train_sizes(pending, options)
        tasks = split_tasks(plan_tasks(pending, options, cfg.seeds_per_stack or len(cfg.seed_list),
                                       sizes, tensorboard), workers)
        bar = tqdm(total=sum(t.steps * t.size for t in tasks), unit=" model-steps", unit_scale=True,
                   dynamic_ncols=True, desc=f"study {len(cfg.inits)} inits x {cfg.seeds} seeds",
                   disable=not progress, mininterval=0.2 if sys.stderr.isatty() else 15.0)
        session = new_session()
        interrupted = False

        def on_done(task, counts, error):
            if error:
                print(f"initlab: failed: {', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: "
                      f"{error}", file=sys.stderr)

        try:
            if workers == 1:
                interrupted = run_inline(out, store, tasks, session, bar.update, on_done, tensorboard)
            elif tasks:
                run_local(out, store, tasks, session, bar.update, on_done, workers, threads, tensorboard)
        except KeyboardInterrupt:
            store.release(session)
            interrupted = True
        bar.close()
    return _Outcome(interrupted, rebuild(out))


@dataclass
class _Outcome:
    interrupted: bool
    info: dict


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def counts_line(counts: Dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in st.STATUSES if counts.get(s)]
    return f"{total} in the plan: " + (", ".join(parts) or "none")
