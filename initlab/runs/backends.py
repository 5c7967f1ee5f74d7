"""Backends: running a task (one engine stack) and committing its runs to the store, in this process,
on a local pool of worker processes, or as Ray tasks.

Each backend calls ``on_step(n)`` as training advances (n model-steps) and ``on_done(task, counts |
None, error)`` when a task ends. Local workers write their records and the store themselves; Ray
workers only train and return rows, and the driver (where the store is) commits them.

Parallelism: each local worker is a process of its own (forked when single-threaded on Linux, else
spawned; ``initlab.engine.pool``) with ``cores // workers`` torch threads, so the machine is not
oversubscribed.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from initlab import data, engine, files
from initlab.engine import pool
from initlab.engine import tensorboard as tb
from initlab.engine.tensorboard import gradient_histograms
from initlab.experiments import study
from initlab.runs import store as st
from initlab.runs.cells import start_group
from initlab.runs.plan import Task

BACKENDS = ("local", "ray")


# --------------------------------------------------------------------------------------------------
# Running one task (in any process) and committing its result (where the store is)
# --------------------------------------------------------------------------------------------------

_DATASETS: Dict[tuple, object] = {}   # per process: a worker loads each dataset once


def dataset(name: str, data_dir: Optional[str]):
    """This process's copy of a dataset, loaded on first use."""
    key = (name, data_dir)
    if key not in _DATASETS:
        _DATASETS[key] = data.load_dataset(name, data_dir, quiet=True)
    return _DATASETS[key]


def keep_dataset(name: str, data_dir: Optional[str], ds) -> None:
    """Use ``ds`` (already loaded by the command) for ``name`` in this process."""
    _DATASETS[(name, data_dir)] = ds


@dataclass
class CellResult:
    """One trained run of a task: its runs.csv row and record rows."""
    hash: str
    row: dict                                   # its runs.csv row
    tables: Dict[str, List[dict]]               # curves / layers / histograms rows
    grads: Optional[Dict[str, dict]] = None     # gradient histograms at init (TensorBoard)
    weights: Optional[dict] = None              # its checkpoint, when its config keeps its weights


@dataclass
class TaskResult:
    """What training a task gives back (from a worker or a Ray node) to be committed."""
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
    res = study.run_study(cfg, dataset=ds, progress=progress if progress is not None else False,
                          starts=task.starts)
    where = {(spec, seed): task.hashes[s][i] for s, seed in enumerate(cfg.seed_list)
             for i, spec in enumerate(cfg.inits)}
    run_hash = {r["run"]: where[(r["init"], r["seed"])] for r in res.runs}
    cells = {h: CellResult(h, r, {name: [] for name in st.RECORD_TABLES})
             for r in res.runs for h in [run_hash[r["run"]]]}
    for name, rows in (("curves", res.curves), ("layers", res.layers), ("histograms", res.hists)):
        for r in rows:
            cells[run_hash[r["run"]]].tables[name].append(r)
    for r in res.runs:
        state = res.weights.get((r["init"], r["seed"]))
        if state is not None:
            cells[run_hash[r["run"]]].weights = study.checkpoint(cfg, r["init"], r["seed"], state, r["test_acc"])
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
            model = study.build_and_initialize(cfg, spec, seed, x_train, (task.starts or {}).get(seed))[0]
            out[task.hashes[s][i]] = gradient_histograms(model, x_train[idx], ds.train_labels[idx],
                                                         cfg.train.label_smoothing)
    return out


def status_of(result: TaskResult, cell: CellResult) -> str:
    """The store status a trained cell gets: interrupted, diverged or done."""
    if result.interrupted:
        return "interrupted"
    return "diverged" if cell.row.get("diverged") else "done"


def commit(out: Path, store: st.Store, task: Task, result: TaskResult, token: str) -> Dict[str, int]:
    """Write every run's record files (and TensorBoard events), then mark the stack's runs finished in
    one transaction. Returns {status: count}."""
    finished = []
    for cell in result.cells:
        rel = st.write_records(out, cell.hash, cell.tables,
                               None if cell.weights is None else {st.WEIGHTS: files.torch_bytes(cell.weights)})
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


def load_starts(out: Path, runs: Sequence[dict], task: Task, loaded: Dict[str, dict]) -> Optional[Dict[int, dict]]:
    """{seed: state dict} that the ``pretrained`` runs of ``task`` start from (None: its config names no
    ``start``): with ``cell:<group hash>``, the weights the run of the same seed in that group of the
    plan left with its records (``runs``: the store's rows; it must be finished); else the checkpoint
    file ``start`` names, for every seed. ``loaded`` {path: state dict} keeps each file read once over
    the tasks of a plan."""
    def state_in(path) -> dict:
        if str(path) not in loaded:
            loaded[str(path)] = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        return loaded[str(path)]

    start = task.cfg.start
    if start is None:
        return None
    group = start_group(start)
    if group is None:
        return {seed: state_in(start) for seed in task.cfg.seed_list}
    by_seed = {r["seed"]: r for r in runs if r["grp"] == group}
    starts = {}
    for seed in task.cfg.seed_list:
        r = by_seed.get(seed)
        if r is None or r["status"] not in st.FINAL or not r["records"]:
            raise RuntimeError(f"seed {seed}: the run whose weights it starts from ({start}) is not finished")
        starts[seed] = state_in(Path(out) / r["records"] / st.WEIGHTS)
    return starts


# --------------------------------------------------------------------------------------------------
# Backends. Each calls on_step(n) as training advances and on_done(task, counts | None, error).
# --------------------------------------------------------------------------------------------------

def _commit_and_report(out: Path, store: st.Store, task: Task, result, token: str, on_done) -> bool:
    """Commit a trained task in this process and tell ``on_done``; True when committed. A full or
    unwritable disk fails this stack only: what is stored stays."""
    try:
        counts = commit(out, store, task, result, token)
    except OSError as e:
        _fail_quietly(store, task, token, e)
        on_done(task, None, pool.one_line(e))
        return False
    on_done(task, counts, None)
    return True


def _fail_quietly(store: st.Store, task: Task, token: str, error: BaseException) -> None:
    """Mark a stack's runs failed if the store can still be written (on a full disk it may not: they
    then stay 'running' under this session's claim, which a resume takes back)."""
    try:
        store.fail(task.flat, token, pool.one_line(error))
    except (OSError, st.sqlite3.Error):
        pass


def run_inline(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
               tensorboard: bool = False) -> bool:
    """Train the tasks one after another in this process (``initlab study``). Returns True when
    Ctrl-C stopped it (the interrupted stack's runs are kept as 'interrupted', as the study did). A task
    that raises has its runs marked failed, and the next one trains, as on the local pool."""
    for task in tasks:
        token = f"{session}:{task.tid}"
        store.claim(task.flat, token)
        try:
            result = run_task(task, progress=on_step, tensorboard=tensorboard)
        except Exception as e:           # noqa: BLE001 - a failed stack: its runs marked failed, the rest go on
            store.fail(task.flat, token, pool.one_line(e))
            on_done(task, None, pool.one_line(e))
            continue
        if not _commit_and_report(out, store, task, result, token, on_done):
            continue
        if result.interrupted:
            return True
    return False


def run_local(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
              workers: int, threads: int, tensorboard: bool = False) -> bool:
    """The tasks on ``workers`` worker processes (``pool.run``), each claiming its task's runs,
    training them, writing their records and marking them finished in the store. A task that raises,
    or whose worker dies (killed, out of memory), has its runs marked failed (a new worker takes the
    dead one's place). Ctrl-C or SIGTERM stops every worker at its next step: each keeps the stack it
    was training as 'interrupted' runs with their records (a resume trains them again), the runs not
    started stay queued. Returns True when interrupted."""
    def on_result(k: int, counts: Optional[Dict[str, int]], error: Optional[str]) -> None:
        if error:
            store.fail(tasks[k].flat, f"{session}:{tasks[k].tid}", error)
        on_done(tasks[k], counts, error)

    try:
        return pool.run(_train_and_commit, tasks, workers, threads, shared=(str(out), session, tensorboard),
                        on_steps=lambda k, n: on_step(n), on_result=on_result, around_start=store.detached,
                        keep_interrupted=True)
    finally:
        store.release(session)


def _train_and_commit(task: Task, steps, out: str, session: str, tensorboard: bool) -> Dict[str, int]:
    """A local worker's item: claim the task's runs, train them, write their records, mark them
    finished. Returns {status: count}."""
    token = f"{session}:{task.tid}"
    with st.Store(Path(out)) as store:
        store.claim(task.flat, token)
        result = run_task(task, progress=steps, tensorboard=tensorboard)
        return commit(Path(out), store, task, result, token)


class ClusterError(ValueError):
    """The Ray cluster named by ``--address`` cannot be reached or joined (one line)."""


RAY_TOKEN_FILE = Path.home() / ".ray" / "auth_token"   # where `ray get-auth-token --generate` writes
_ray_joined = False   # this process joined a cluster through connect_ray (run_ray leaves it at the end)


def ray_token_available() -> bool:
    """True when this machine has a Ray token: $RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path or RAY_TOKEN_FILE).is_file()


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (Python's and C++'s writes alike)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def use_ray_token() -> None:
    """Send this machine's Ray token (if it has one and $RAY_AUTH_MODE is unset): what ``ray start``
    does on the nodes, for a cluster to join (a local instance makes its own token)."""
    if "RAY_AUTH_MODE" not in os.environ and ray_token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:          # imported already: refresh its cached config, as Ray itself does
            try:
                from ray._raylet import Config
                Config.initialize("")
            except Exception:  # noqa: BLE001 - an older or newer Ray without it: the mode is read at init
                pass


def connect_ray(address: str, timeout: float = 5.0) -> None:
    """Join the Ray cluster at ``address`` (HOST:PORT or auto) before any work, or raise ClusterError.

    A cluster started with ``ray start --head`` (Ray >= 2.59) checks a token on every call. The driver
    sends one when it has one and $RAY_AUTH_MODE is unset: the token mode is switched on here for
    this process (what ``ray start`` does on the nodes), so a token in ~/.ray/auth_token or
    $RAY_AUTH_TOKEN is enough."""
    use_ray_token()
    import ray

    if address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        except ValueError:
            raise ClusterError(f"--address {address}: expected HOST:PORT (e.g. 10.0.0.1:6379) or auto") from None
        except OSError as e:
            raise ClusterError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None
    global _ray_joined
    try:
        with _native_stderr_silenced():   # Ray's C++ client logs every failed retry straight to fd 2
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        _ray_joined = True
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, AuthenticationError...
        hint = "" if ray_token_available() else (
            " (a cluster with token authentication needs its token here: copy the head's ~/.ray/auth_token "
            "or set RAY_AUTH_TOKEN)")
        raise ClusterError(f"cannot join the Ray cluster at {address}: {pool.one_line(e)}{hint}") from None


def run_ray(out: Path, store: st.Store, tasks: Sequence[Task], session: str, on_step, on_done,
            threads: int, address: Optional[str], tensorboard: bool = False) -> None:
    """The same tasks as Ray tasks (``threads`` CPUs each). The workers only train and return rows;
    this process writes the record files and the store. Without ``address`` (and no RAY_ADDRESS)
    Ray starts a local instance for the duration of the sweep; with one, this process joins that
    cluster (:func:`connect_ray`) unless it already has."""
    import ray

    global _ray_joined
    started = not ray.is_initialized() or _ray_joined
    if not ray.is_initialized():
        if address:
            connect_ray(address)
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
                        store.fail(task.flat, token, pool.one_line(e))
                        on_done(task, None, pool.one_line(e))
                        continue
                    on_step(task.steps * task.size)
                    _commit_and_report(out, store, task, result, token, on_done)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        store.release(session)
        if started:
            ray.shutdown()
            _ray_joined = False


def _ray_task(task: Task, threads: int, tensorboard: bool) -> TaskResult:
    torch.set_num_threads(threads)
    return run_task(task, tensorboard=tensorboard)
