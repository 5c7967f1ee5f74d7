"""The study through the run store: what ``initlab study`` and ``initlab sweep`` share to plan, train and
account for their runs in an output folder (``open_out``, ``train_sizes``, ``new_session``,
``counts_line``), and ``run_study_stored``, the study trained cell by cell into the store.

Every finished run is kept in the folder's store (``initlab.runs.store``); the tables are rebuilt
from it (``initlab.runs.rebuild``), so a resume after Ctrl-C or ``kill -9`` only trains what is
missing.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from tqdm import tqdm

from initlab import data, files
from initlab.engine.pool import cores
from initlab.experiments import study
from initlab.options import UsageError
from initlab.runs import backends
from initlab.runs import store as st
from initlab.runs.cells import cells_of
from initlab.runs.plan import plan_tasks, split_tasks
from initlab.runs.rebuild import rebuild


def new_session() -> str:
    """'host:pid:random': the prefix of every claim this process makes (``Store.release`` frees them)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def open_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse to mix runs into a folder by accident: a store there needs --resume (continue) or --force
    (start over: the store, records and TensorBoard files are deleted)."""
    out = Path(out)
    if resume and st.exists(out):
        return
    if resume and not (out / "runs.csv").exists():
        return                            # nothing to resume yet: --resume starts it (the same command
                                          # re-run after a kill at any moment finishes the work)
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
            sizes[(name, where)] = len(backends.dataset(name, where).train_images)
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
    out = Path(out)
    open_out(out, resume, force)
    if dataset is not None:
        backends.keep_dataset(cfg.dataset, cfg.data_dir, dataset)
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
        store.requeue_corrupt(out)        # a finished run whose records were damaged trains again
        pending = _pending(store)
        sizes = train_sizes(pending, options)
        tasks = split_tasks(plan_tasks(pending, options, cfg.seeds_per_stack or len(cfg.seed_list),
                                       sizes, tensorboard), workers)
        bar = tqdm(total=sum(t.steps * t.size for t in tasks), unit=" model-steps", unit_scale=True,
                   dynamic_ncols=True, desc=f"study {len(cfg.inits)} inits x {cfg.seeds} seeds",
                   disable=not progress, mininterval=0.2 if sys.stderr.isatty() else 15.0)
        session = new_session()
        interrupted = False
        failed: List[str] = []

        def on_done(task, counts, error):
            if error:
                failed.append(f"{', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: {error}")
                print(f"initlab: failed: {', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: "
                      f"{error}", file=sys.stderr)

        try:
            if workers == 1:
                interrupted = backends.run_inline(out, store, tasks, session, bar.update, on_done, tensorboard)
            elif tasks:
                backends.run_local(out, store, tasks, session, bar.update, on_done, workers, threads,
                                   tensorboard)
        except KeyboardInterrupt:
            store.release(session)
            interrupted = True
        bar.close()
    return _Outcome(interrupted, rebuild(out), failed)


@dataclass
class _Outcome:
    interrupted: bool
    info: dict
    failed: List[str] = field(default_factory=list)    # one line per stack that failed


def counts_line(counts: Dict[str, int]) -> str:
    """'6 in the plan: 4 done, 2 queued'."""
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in st.STATUSES if counts.get(s)]
    return f"{total} in the plan: " + (", ".join(parts) or "none")
