"""One pool of worker processes, for everything that trains on several cores at once.

``run(work, items, workers)`` starts ``workers`` processes (forked when single-threaded on Linux, see
``start_method``; spawned otherwise) with ``threads`` torch threads each, and hands every idle worker
the next item; the worker calls ``work(item, steps, *shared)`` and sends back what it returned, or a
one-line error. The runner's local backend (``initlab.runs.backends``) uses it with one task (a stack
of seeds x inits) per item, which the worker trains and commits to the run store itself.

    def work(item, steps, *shared):            # top level in its module (spawn pickles it by name)
        ...; steps(1); ...                     # progress, in any unit the caller's bar counts
        return result                          # picklable; travels by value

    interrupted = pool.run(work, items, workers=2, shared=(cfg, dataset),
                           on_steps=lambda k, n: ..., on_result=lambda k, result, error: ...)

The driver (the calling process) sees everything in its own thread, through two callbacks:

- ``on_steps(k, n)``: ``work`` of item k called ``steps``; n units since the last message. A worker
  batches its counts: a message once it holds ``FLUSH_STEPS`` units and ``FLUSH_SECONDS`` have passed,
  and the rest when the item ends.
- ``on_result(k, result, error)``: item k ended. ``error`` (then ``result`` is None) is one line,
  ``Type: message``, when ``work`` raised -- the worker goes on with the next item -- or ``worker died
  (exit code N)`` when its process ended under it (killed, out of memory); a new worker takes its place.
  An exception raised by a callback stops the pool (its workers are terminated) and propagates.

``shared`` travels once per worker, when it starts (a forked worker inherits it; a spawned one gets its
tensors as shared memory: a dataset is not copied per item); results travel by value (pickled in the
worker), because a tensor sent as such would arrive as a shared-memory handle that dies with its worker.

Ctrl-C (SIGINT to the foreground process group, so to the workers too) and SIGTERM have two meanings:

- ``keep_interrupted=False`` (the sweep: its runs go back to the queue): workers ignore SIGINT; the
  driver's KeyboardInterrupt terminates every worker and propagates. Results already delivered stay.
- ``keep_interrupted=True`` (the study: an interrupted stack is a result): ``work`` gets the
  KeyboardInterrupt and returns what it has (``engine.train_stack`` stops at the next step), the worker
  sends that and stops; the driver hands out nothing more, passes the signal on to its workers (a
  SIGTERM may have reached the driver alone), collects the items in progress and returns True. An
  item whose ``work`` let the KeyboardInterrupt escape is left out.

Workers end with their driver, so a ``kill -9`` of it leaves no training behind: Linux kills them
(PR_SET_PDEATHSIG); elsewhere a worker checks its parent at every progress message and while idle.
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import pickle
import queue
import signal
import time
from typing import Callable, ContextManager, Dict, Optional, Sequence

import torch

from initlab import forking, user_inits

FLUSH_STEPS = 10        # progress units per message at least (a training step takes ~ms) ...
FLUSH_SECONDS = 0.25    # ... and at most four messages a second per worker
IDLE_POLL = 1.0         # s a free worker waits for an item between checks that its driver lives
DRIVER_POLL = 0.5       # s the driver waits for a message ...
LIVENESS_EVERY = 1.0    # ... and at least this often it looks for dead workers


def cores() -> int:
    """CPU cores this process may run on (its affinity mask; the machine's count elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start_method(threads: int) -> str:
    """'fork' for single-threaded workers on Linux while CUDA is untouched: a forked worker starts in
    milliseconds with torch imported, the data loaded and the registered initializers known (a
    spawned one re-imports torch, ~3 s on a small machine), and with the driver's torch settings
    (``set_default_dtype``, ``set_flush_denormal``) as they were when it forked. Otherwise 'spawn': a
    forked child that runs OpenMP on several threads after its parent did can hang, and CUDA does not
    survive a fork."""
    if threads == 1 and forking.fork_available() and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def one_line(e: BaseException) -> str:
    """'Type: last line of the message', at most 500 characters: an error as the driver reports it."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:500]


def run(work: Callable, items: Sequence, workers: int, threads: Optional[int] = None, *,
        shared: tuple = (), on_steps: Optional[Callable[[int, int], None]] = None,
        on_result: Optional[Callable[[int, object, Optional[str]], None]] = None,
        keep_interrupted: bool = False,
        around_start: Callable[[], ContextManager] = contextlib.nullcontext) -> bool:
    """Call ``work(items[k], steps, *shared)`` for every k on ``min(workers, len(items))`` worker
    processes with ``threads`` torch threads each (default: cores // workers), each taking the next
    item in order when it is free. Returns True when Ctrl-C stopped it (``keep_interrupted``).
    ``around_start()``: a context manager every worker is started in (``Store.detached``: no SQLite
    connection open across a fork)."""
    items = list(items)
    if not items:
        return False
    workers = max(1, min(workers, len(items)))
    threads = threads or max(1, cores() // workers)
    method = start_method(threads)
    ctx = mp.get_context(method)
    if method == "spawn":
        work = user_inits.carry(work)   # with the initializers a notebook or a script registered
    outbox = ctx.Queue()
    todo = collections.deque(range(len(items)))
    left = set(todo)                    # items not reported yet
    procs: Dict[int, tuple] = {}        # pid -> (process, its inbox)
    held: Dict[int, int] = {}           # pid -> the item it works on
    replacements = len(items)
    interrupted = False

    def start() -> None:
        inbox = ctx.Queue()
        p = ctx.Process(target=_worker, daemon=True, args=(work, shared, inbox, outbox, threads,
                                                           os.getpid(), keep_interrupted))
        with around_start():
            forking.start(p)
        procs[p.pid] = (p, inbox)

    def handle(msg: tuple) -> None:
        kind, pid = msg[0], msg[1]
        if kind == "steps":
            if on_steps is not None:
                on_steps(msg[2], msg[3])
        elif kind == "ready":
            if pid in procs and procs[pid][0].is_alive():
                k = todo[0] if todo else None
                procs[pid][1].put(None if k is None else (k, items[k]))
                if k is not None:
                    held[pid] = todo.popleft()
        elif held.get(pid) == msg[2]:           # "done" or "interrupted"
            left.discard(msg[2])
            held.pop(pid, None)
            if kind == "done" and on_result is not None:
                on_result(msg[2], None if msg[3] is None else pickle.loads(msg[3]), msg[4])

    def drain() -> None:
        while True:
            try:
                msg = outbox.get_nowait()
            except queue.Empty:
                return
            handle(msg)

    def bury() -> None:
        """Items of dead workers: failed (or, after Ctrl-C, left out); replace the workers."""
        nonlocal replacements
        dead = [pid for pid, (p, _) in procs.items() if not p.is_alive()]
        if not dead:
            return
        drain()                                 # what they sent before they died comes first
        for pid in dead:
            k = held.pop(pid, None)
            p, inbox = procs.pop(pid)
            inbox.close()
            if k is not None:
                left.discard(k)
                if not interrupted and on_result is not None:
                    on_result(k, None, f"worker died (exit code {p.exitcode})")
            if todo and replacements > 0:
                replacements -= 1
                start()
        if left and not procs:
            raise RuntimeError("every worker died; see the errors above")

    try:
        for _ in range(workers):
            start()
        checked = time.monotonic()
        while left:
            try:
                try:
                    handle(outbox.get(timeout=DRIVER_POLL))
                    if time.monotonic() - checked < LIVENESS_EVERY:
                        continue
                except queue.Empty:
                    pass
                checked = time.monotonic()
                bury()
            except KeyboardInterrupt:
                if not keep_interrupted:
                    raise
                interrupted = True              # collect what the workers have
                todo.clear()
                left.intersection_update(held.values())
                for p, _ in procs.values():     # Ctrl-C reaches them with the process group; a
                    if p.is_alive():            # SIGTERM to the driver alone does not
                        with contextlib.suppress(OSError):
                            os.kill(p.pid, signal.SIGINT)
        for _, inbox in procs.values():         # all done: let every worker finish on its own
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
    return interrupted


# --------------------------------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------------------------------

def _exit_if_orphaned(parent: int) -> None:
    if os.getppid() != parent:          # the driver is gone: do not train on for nobody
        os._exit(1)


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass       # elsewhere _Steps and the idle wait check the parent pid


class _Steps:
    """A worker's ``steps(n)``: batches counts into ("steps", pid, item, n) messages."""

    def __init__(self, outbox, parent: int) -> None:
        self.outbox, self.parent, self.item, self.n, self.t = outbox, parent, None, 0, time.monotonic()

    def start(self, item: int) -> None:
        self.item, self.n, self.t = item, 0, time.monotonic()

    def __call__(self, n: int) -> None:
        self.n += n
        if time.monotonic() - self.t >= FLUSH_SECONDS:
            _exit_if_orphaned(self.parent)
            if self.n >= FLUSH_STEPS:
                self.flush()

    def flush(self) -> None:
        _exit_if_orphaned(self.parent)
        if self.n:
            self.outbox.put(("steps", os.getpid(), self.item, self.n))
        self.n, self.t = 0, time.monotonic()


def _worker(work, shared: tuple, inbox, outbox, threads: int, parent: int,
            keep_interrupted: bool) -> None:
    """Say "ready", take the item the driver sends (None: stop), run it, send the result; repeat."""
    stop = []

    def on_sigint(signum, frame):       # finish this item with what it has, then stop
        if stop:                        # a second signal (the driver forwards the first): the item
            return                      # is being wrapped up already
        stop.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint if keep_interrupted else signal.SIG_IGN)
    # SIGTERM (a batch scheduler's notice before it kills) means what Ctrl-C means; otherwise the
    # default, not a handler a forked worker's driver installed
    signal.signal(signal.SIGTERM, on_sigint if keep_interrupted else signal.SIG_DFL)
    _die_with_parent()
    _exit_if_orphaned(parent)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:                # forked from a driver that had used its inter-op pool
        pass
    steps = _Steps(outbox, parent)
    pid = os.getpid()
    try:
        while not stop:
            outbox.put(("ready", pid))
            while True:
                try:
                    task = inbox.get(timeout=IDLE_POLL)
                    break
                except queue.Empty:
                    _exit_if_orphaned(parent)
            if task is None:
                break
            k, item = task
            steps.start(k)
            try:
                result, error = pickle.dumps(work(item, steps, *shared), pickle.HIGHEST_PROTOCOL), None
            except KeyboardInterrupt:
                steps.flush()
                outbox.put(("interrupted", pid, k))
                break
            except Exception as e:      # one bad item must not end the pool
                result, error = None, one_line(e)
            steps.flush()
            outbox.put(("done", pid, k, result, error))
    except KeyboardInterrupt:
        pass                            # Ctrl-C while free (or a second one): stop
