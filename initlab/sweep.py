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

from . import store as st

# settings that say how or where runs are trained, not what a run is: not part of a cell's hash
NOT_IN_CELL = ("inits", "seeds", "first_seed", "data_dir", "device", "seeds_per_stack", "workers")
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
    from .cli import STUDY_FLAGS, UsageError, read_toml, study_config

    doc = dict(read_toml(path))
    entries = doc.pop("cell", None)
    known = {dest.split(".")[-1]: dest for _, dest, _, _ in STUDY_FLAGS}

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
    flags = {dest: vars(args)[dest] for _, dest, _, _ in STUDY_FLAGS if args and dest in vars(args)}
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
        configs.append(study_config(ns))
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

    from .engine import TrainConfig
    from .study import StudyConfig

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

    from .study import balance

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
    from .engine import steps_for

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
    from . import data

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
    from . import study

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
    from . import engine, study
    from .tensorboard import gradient_histograms

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
            from . import tensorboard as tb

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
    import json

    from .study import atomic_write_text, rows_to_csv

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2) + "\n")
    for name in ("curves", "layers", "histograms", "runs"):
        atomic_write_text(folder / f"{name}.csv", rows_to_csv(tables[name]))


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

    from . import report
    from .study import atomic_write_text

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
          f"{info['counts']}.", "", "## Results", "", report._md_table(head, body), "", "## Groups", ""]
    md += [f"- [{name}]({rel / 'report.md'})" for name, rel in links] + [""]
    atomic_write_text(out / "report.md", "\n".join(md))
    parts = [f"<h1>{html.escape(title + note)}</h1>", f"<p>Varied: {html.escape(varied)}.</p>",
             "<h2>Results</h2>", report._html_table(head, body), "<h2>Groups</h2><ul>"]
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
    from .cli import UsageError

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
    from . import data
    from .cli import UsageError

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

    from . import study

    out = Path(out)
    open_out(out, resume, force)
    if dataset is not None:
        _DATASETS[(cfg.dataset, cfg.data_dir)] = dataset
    cells = cells_of(cfg)
    options = {"data_dir": cfg.data_dir, "device": cfg.device, "seeds_per_stack": cfg.seeds_per_stack}
    workers = getattr(cfg, "workers", 1) or getattr(study, "default_workers", lambda d: 1)(
        study.resolve_device(cfg.device))
    threads = max(1, cores() // workers)
    with st.Store(out) as store:
        store.plan(cells, plan={"kind": "study", "title": title, "study": study.config_dict(cfg),
                                "options": options,
                                "execution": {"backend": "inline" if workers == 1 else "local",
                                              "workers": workers}},
                   environment={**study.environment(), **({"cpu_threads": threads} if workers > 1 else {})})
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


# --------------------------------------------------------------------------------------------------
# Command line: initlab sweep, initlab runs, and --resume / --tensorboard for initlab study
# --------------------------------------------------------------------------------------------------

def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


SWEEP_HELP = """\
Train a grid of runs: every combination of the list-valued settings in a TOML file
(study flag names with _), each with every init and seed. For example:

    inits = ["xavier", "kaiming"]
    seeds = 3
    train_size = 2000
    lr = [0.001, 0.003]          # a list: try each (2 lr x 2 inits x 3 seeds = 12 runs)

or list combinations as [[cell]] tables, each merged over the settings at the top:

    [[cell]]
    init = "kaiming"
    lr = 0.01

Every finished run is kept in OUT/store.sqlite with its records under OUT/records/; after a crash
(or Ctrl-C) --resume trains only what is missing. The tables and the report are rebuilt from the
store (one report per combination under OUT/groups/ when more than init and seed varies)."""


def add_parsers(sub) -> None:
    """Add ``sweep`` and ``runs``, and ``--resume`` / ``--tensorboard`` to ``study``."""
    from .cli import STUDY_FLAGS, _bool

    if "study" in sub.choices:
        _add_store_flags(sub.choices["study"])
    s = sub.add_parser("sweep", help="a grid of runs from a TOML file, by local worker processes or "
                       "on a Ray cluster; resumable", description=SWEEP_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Any study flag overrides the grid file (one value for every cell).")
    s.add_argument("grid", nargs="?", type=Path, help="TOML grid (optional with --resume: the stored "
                   "plan is used)")
    for flag, dest, typ, help_ in STUDY_FLAGS:
        if typ == "list":
            s.add_argument(flag, dest=dest, nargs="+", default=argparse.SUPPRESS, help=help_, metavar="NAME")
        elif typ == "bool":
            s.add_argument(flag, dest=dest, nargs="?", const=True, type=_bool, default=argparse.SUPPRESS,
                           help=help_)
        else:
            s.add_argument(flag, dest=dest, type=typ, default=argparse.SUPPRESS, help=help_)
    s.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>-sweep)")
    s.add_argument("--force", action="store_true", help="start over in an --out folder that holds runs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--workers", type=int, default=None,
                   help=f"local worker processes (default: the core count, here {cores()})")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores // workers)")
    s.add_argument("--backend", default="local", help="local (worker processes) | ray "
                   "(pip install 'initlab[ray]')")
    s.add_argument("--address", help="Ray cluster to join, e.g. HEAD:6379 or auto (default: "
                   "$RAY_ADDRESS, else a local Ray instance)")
    s.add_argument("--no-report", action="store_true", help="write the tables only (a big sweep's "
                   "plots take a while); initlab report OUT makes the report later")
    _add_store_flags(s)
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("runs", help="list the runs of a study or sweep folder and their status")
    r.add_argument("dir", type=Path, help="the folder `initlab study` or `initlab sweep` wrote")
    r.add_argument("--all", action="store_true", help="also runs of earlier plans kept in the store")
    r.set_defaults(func=cmd_runs)


def _add_store_flags(p) -> None:
    p.add_argument("--resume", action="store_true", help="continue the runs in --out: skip every run "
                   "already done with the same settings, rerun the unfinished ones (flags left out "
                   "keep the stored values)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files "
                   "(scalars, weight and gradient histograms) to OUT/tb (pip install "
                   "'initlab[tensorboard]')")


def stored_study_config(args):
    """The StudyConfig a ``study --resume`` starts from (flags on the command line still win)."""
    from .cli import UsageError

    if not getattr(args, "resume", False):
        return None
    if args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if not st.exists(args.out):
        raise UsageError(f"--out {args.out} holds no run store to resume (no {st.STORE_NAME})")
    with st.Store(args.out) as store:
        plan = store.meta("plan", {})
    if plan.get("kind") != "study":
        raise UsageError(f"--out {args.out} holds a sweep; resume it with initlab sweep --resume")
    d = {k: v for k, v in plan["study"].items() if k != "seed_list"}
    cfg = config_for({k: v for k, v in d.items() if k not in NOT_IN_CELL}, d["inits"],
                     list(range(d["first_seed"], d["first_seed"] + d["seeds"])), d)
    cfg.seeds_per_stack = d.get("seeds_per_stack", 0)
    if "workers" in d:
        cfg.workers = d["workers"]
    return cfg


def check_options(args) -> None:
    from .cli import UsageError

    if getattr(args, "tensorboard", False):
        from .tensorboard import TensorBoardMissing, require

        try:
            require()
        except TensorBoardMissing as e:
            raise UsageError(str(e)) from None


def cmd_sweep(args) -> int:
    import datetime as _dt

    from .cli import UsageError, prepare_out
    from .study import environment

    check_options(args)
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r}; choose from: {', '.join(BACKENDS)}")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install 'initlab[ray]'") from None
    elif args.address:
        raise UsageError("--address is for --backend ray")
    workers = args.workers if args.workers is not None else cores()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    threads = args.threads if args.threads is not None else max(1, cores() // workers)
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if args.grid is None and not args.resume:
        raise UsageError("give a grid file (initlab sweep GRID.toml), or --resume --out DIR")
    out = args.out or Path("runs") / f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep"
    configs = read_grid(args.grid, args) if args.grid is not None else None   # (errors before any write)
    if st.exists(out):
        with st.Store(out) as store:
            if store.meta("plan", {}).get("kind") == "study":
                raise UsageError(f"--out {out} holds a study; resume it with initlab study --resume")
    open_out(out, args.resume, args.force)
    prepare_out(out, "sweep", force=True)      # (only proves the folder is writable here)

    env = {**environment(), "cpu_threads": threads}
    execution = {"backend": args.backend, "workers": workers if args.backend == "local" else None,
                 "threads_per_worker": threads, "address": args.address}
    with st.Store(out) as store:
        if configs is not None:
            first = configs[0]
            options = {"data_dir": first.data_dir, "device": first.device,
                       "seeds_per_stack": first.seeds_per_stack}
            cells = list({c["hash"]: c for cfg in configs for c in cells_of(cfg)}.values())
            store.plan(cells, environment=env, plan={"kind": "sweep", "source": str(args.grid),
                                                     "options": options, "execution": execution})
        else:
            plan = store.meta("plan", {})
            if not plan:
                raise UsageError(f"--out {out} holds no plan yet (stopped while starting): give the "
                                 "grid file too, initlab sweep GRID.toml --out DIR --resume")
            options = plan["options"]
            store.plan([{**r, "config": st.canonical_json(r["config"])} for r in store.runs()],
                       environment=env, plan={**plan, "execution": execution})
        everything = store.runs()
        varied = varied_settings([r["config"] for r in everything])
        pending = [r for r in everything if r["status"] not in st.FINAL]
        sizes = train_sizes(pending, options, required=args.backend == "local")
        tasks = plan_tasks(pending, options, options.get("seeds_per_stack") or 1, sizes,
                           args.tensorboard, varied)
        if args.backend == "local":
            tasks = split_tasks(tasks, workers)
        summary = _run_tasks(out, store, tasks, args, workers, threads, len(everything))
    info = rebuild(out)
    if info["finished"]:
        from . import report

        print(report.text_table(*report.summary_table(report.load(out))))
        if args.no_report:
            print(f"\ntables: {out}/runs.csv ...; the report: initlab report {out}")
        else:
            print(f"\nreport: {write_reports(out, info, title=f'initlab sweep: {out.name}')}")
    print(f"runs: {_counts_line(info['counts'])}  (initlab runs {out})")
    for error in summary["errors"][:5]:
        print(f"initlab: failed: {error}", file=sys.stderr)
    if summary["interrupted"]:
        print(f"interrupted: resume with initlab sweep --resume --out {out}", file=sys.stderr)
        return 130
    return 1 if summary["errors"] else 0


def _run_tasks(out, store, tasks, args, workers, threads, n_cells) -> dict:
    from tqdm import tqdm

    where = (f"{min(workers, max(1, len(tasks)))} workers x {threads} threads" if args.backend == "local"
             else f"ray ({args.address or 'local'})")
    bar = tqdm(total=sum(t.steps * t.size for t in tasks), unit=" model-steps", unit_scale=True,
               dynamic_ncols=True, disable=args.quiet,
               desc=f"sweep {sum(t.size for t in tasks)}/{n_cells} runs, {len(tasks)} stacks, {where}",
               mininterval=0.2 if sys.stderr.isatty() else 15.0)
    summary = {"errors": [], "interrupted": False, "done": 0}

    def on_done(task, counts, error):
        if error:
            summary["errors"].append(f"{', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: {error}")
        else:
            summary["done"] += task.size
        bar.set_postfix(runs=summary["done"], failed=len(summary["errors"]), refresh=False)

    session = new_session()
    try:
        if not tasks:
            pass
        elif args.backend == "local":
            run_local(out, store, tasks, session, bar.update, on_done, workers, threads, args.tensorboard)
        else:
            run_ray(out, store, tasks, session, bar.update, on_done, threads, args.address,
                    args.tensorboard)
    except KeyboardInterrupt:
        summary["interrupted"] = True
    bar.close()
    return summary


def _counts_line(counts: Dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in st.STATUSES if counts.get(s)]
    return f"{total} in the plan: " + (", ".join(parts) or "none")


def cmd_runs(args) -> int:
    from .cli import UsageError
    from .report import text_table

    if not st.exists(args.dir):
        raise UsageError(f"{args.dir} holds no run store ({st.STORE_NAME})")
    with st.Store(args.dir) as store:
        runs = store.runs(plan_only=not args.all)
        counts = store.counts()
    varied = varied_settings([r["config"] for r in runs])
    head = ["#", "status", "init", "seed", "test_acc"] + list(varied) + ["attempts", "hash"]
    body = []
    for r in runs:
        acc = (r["row"] or {}).get("test_acc")
        flat = flatten(settings_of(r["config"]))
        body.append(["-" if r["position"] is None else r["position"], r["status"], r["init"], r["seed"],
                     "" if acc is None else f"{100 * acc:.2f} %"] + [flat.get(k) for k in varied]
                    + [r["attempts"], r["hash"][:12]])
    print(text_table(head, body))
    print(f"\n{_counts_line(counts)}")
    for r in runs:
        if r["status"] == "failed" and r["error"]:
            print(f"failed {r['init']} seed {r['seed']}: {r['error']}")
    return 0


def cmd_report(args) -> int:
    """``initlab report DIR`` for a folder with a store: rebuild the tables first, then the report."""
    from . import report

    info = rebuild(args.dir)
    if not info["finished"]:
        from .cli import UsageError

        raise UsageError(f"{args.dir} holds no finished runs yet ({_counts_line(info['counts'])})")
    path = write_reports(args.dir, info, title="initlab study" if info["kind"] == "study"
                         else f"initlab sweep: {Path(args.dir).name}")
    print(report.text_table(*report.summary_table(report.load(args.dir))))
    print(f"\nreport: {path}")
    return 0
