"""Threads for a lone stack: as many cores as the other processes on this machine leave idle."""
from __future__ import annotations

import os
import time
from typing import Optional, Tuple

import torch


def cpu_cores() -> int:
    """Cores this process may run on (its affinity set; the machine's count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100   # /proc/stat's ticks per second


def cpu_reading() -> Optional[Tuple[float, float, float]]:
    """(wall seconds, busy CPU-seconds of this process's cores summed over every process, this
    process's CPU-seconds), or None where there is no /proc/stat. Two readings give the cores that
    other processes kept busy in between."""
    try:
        allowed = {f"cpu{c}" for c in os.sched_getaffinity(0)}
    except AttributeError:
        allowed = None
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and not line.startswith("cpu ")]
    except OSError:
        return None
    busy = 0
    for name, *ticks in lines:
        if allowed is None or name in allowed:
            t = [int(v) for v in ticks[:8]]       # user nice system idle iowait irq softirq steal
            busy += sum(t) - t[3] - t[4]
    return time.monotonic(), busy / _CLK_TCK, time.process_time()


_IMPORTED = cpu_reading()   # the first window runs from here (process start) to the first training step


def busy_elsewhere(since: Optional[Tuple[float, float, float]], window: float = 0.2) -> float:
    """Cores kept busy by other processes since the reading ``since`` (if it is under ``window``
    seconds old, or None, this waits out the window). 0 where it cannot be measured."""
    if since is None:
        since = cpu_reading()
        if since is None:
            return 0.0
    wait = window - (time.monotonic() - since[0])
    if wait > 0:
        time.sleep(wait)
    now = cpu_reading()
    if now is None:
        return 0.0
    wall = now[0] - since[0]
    return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / wall)


class ThreadGovernor:
    """Torch's thread count while a stack trains on the CPU: never above the count set when training
    starts (``torch.set_num_threads``: a worker pool sets 1 per worker; a lone process keeps torch's
    default, one per core), and no more than the cores other processes leave idle, measured from
    ``/proc/stat`` every ``every`` seconds. Why: OpenMP threads that share a core with another busy
    process wait on each other at every operation -- on this 2-core machine, with two other
    processes running, a one-model LeNet-5 step took 19 ms on one thread and 250 ms on two -- while on
    an idle machine the second core is free speed. A thread is kept while other processes use less
    than a quarter of its core. ``stop`` restores the starting count. Thread counts change the
    summation order of some kernels, so a run whose count changed matches the one-thread run
    statistically, not bit for bit."""

    SPARE = 0.25    # a core counts as idle while other processes use less than this share of it

    def __init__(self, every: float = 1.0) -> None:
        self.most = torch.get_num_threads()
        self.every = every
        self.threads = self.most
        self.used = set()
        self._last = None

    def start(self) -> "ThreadGovernor":
        if self.most > 1:
            fresh = _IMPORTED is not None and time.monotonic() - _IMPORTED[0] < 30.0
            self._decide(_IMPORTED if fresh else None)
        self.used.add(self.threads)
        return self

    def tick(self) -> None:
        """Call once a step: re-measures when ``every`` seconds have passed."""
        if self.most > 1 and time.monotonic() - self._last[0] >= self.every:
            self._decide(self._last)
            self.used.add(self.threads)

    def _decide(self, since) -> None:
        others = busy_elsewhere(since)
        self._last = cpu_reading() or (time.monotonic(), 0.0, 0.0)
        free = min(self.most, cpu_cores()) - others
        threads = max(1, min(self.most, int(free + self.SPARE)))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads

    def stop(self) -> None:
        if self.threads != self.most:
            torch.set_num_threads(self.most)
            self.threads = self.most
