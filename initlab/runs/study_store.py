"""An output folder with a run store: opening it (``open_out``: resume, force or refuse), the data sizes
a plan needs (``train_sizes``), who claims runs (``new_session``) and how their counts read
(``counts_line``). Training itself is the runner's (``initlab.runs.runner``).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Dict, Sequence

from initlab import data
from initlab.options import UsageError, flag
from initlab.runs import backends
from initlab.runs import store as st


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
            raise UsageError(f"{flag('out', out)} already holds runs; pass {flag('resume', True)} to continue them or "
                             f"{flag('force', True)} to start over")
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


def counts_line(counts: Dict[str, int]) -> str:
    """'6 in the plan: 4 done, 2 queued'."""
    total = sum(counts.values())
    parts = [f"{counts[s]} {s}" for s in st.STATUSES + ("stale",) if counts.get(s)]
    return f"{total} in the plan: " + (", ".join(parts) or "none")
