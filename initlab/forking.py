"""Child processes started by fork: where that is possible, and starting one without the warning.

Python >= 3.12 warns at every fork of a process that runs threads (torch's, tqdm's, a notebook's); the
callers here fork only children that use none of what those threads may hold, so the warning is
silenced for their own forks alone.
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import warnings


def fork_available() -> bool:
    """True on Linux, where fork is a start method (elsewhere children are spawned)."""
    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def start(process: mp.process.BaseProcess) -> None:
    """``process.start()``, without Python's warning about forking a threaded process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
        process.start()
