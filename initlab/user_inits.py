"""Initializers registered outside initlab -- in a notebook cell, a script's ``__main__`` -- carried to
the worker processes a study trains on.

A study's workers with several torch threads each, those of a process that has used CUDA, and any worker
off Linux, are spawned: fresh interpreters that import initlab again and so see only the initializers
initlab registers itself (single-threaded workers on Linux are forked and inherit them;
``engine.pool.start_method``). A function defined in a notebook is not importable there, and one defined
under a script's ``if __name__ == "__main__":`` is never run there. So the driver sends them along:
:func:`payload` pickles every registered initializer that does not come from initlab with cloudpickle (a
function of ``__main__`` travels as its code, one of an importable module by name), and
:func:`register_payload` registers them in the worker. :func:`carry` wraps a worker's entry point so
that it does both; the one line a process pool needs, in the driver, before its processes start::

    target = user_inits.carry(target)

``carry`` returns the entry point itself when nothing needs carrying, so the command line pays nothing.
"""
from __future__ import annotations

import inspect
import pickle
from typing import Any, Callable, Dict, List, Tuple

from initlab.init import INITIALIZERS, MODEL_INITIALIZERS
from initlab.registry import Registry

REGISTRIES: Dict[str, Registry] = {"weight": INITIALIZERS, "model": MODEL_INITIALIZERS}

INTERACTIVE = "__main__"   # the module of whatever a notebook cell or the script being run defines


def module_of(obj: Any) -> str:
    """The module that defined ``obj`` (through ``torch.no_grad``'s and other wrappers)."""
    return getattr(inspect.unwrap(obj), "__module__", None) or ""


def from_initlab(obj: Any) -> bool:
    return module_of(obj) == "initlab" or module_of(obj).startswith("initlab.")


def user_entries() -> List[Tuple[str, str, Any]]:
    """(registry kind, name, object) of every registered initializer not defined by initlab."""
    return [(kind, name, reg.get(name)) for kind, reg in REGISTRIES.items() for name in reg.names()
            if not from_initlab(reg.get(name))]


def payload() -> bytes:
    """The user initializers, pickled for a worker process (``b""`` when there are none).

    Raises ValueError naming the initializer that cannot be pickled (say, one that holds an open
    file): train in this process instead (``workers=1``)."""
    entries = user_entries()
    if not entries:
        return b""
    import cloudpickle  # only a process that ships an initializer needs it

    for kind, name, obj in entries:
        try:
            cloudpickle.dumps(obj)
        except Exception as e:   # noqa: BLE001 - any pickling failure reads the same to the user
            raise ValueError(f"initializer {name!r} cannot be sent to a worker process "
                             f"({type(e).__name__}: {e}); train in this process with workers=1") from None
    return cloudpickle.dumps(entries)


def register_payload(data: bytes) -> List[str]:
    """Register the initializers of a :func:`payload` that this process lacks; returns their names.

    A name already registered is left alone: the worker may have registered it itself, by importing
    the module that defines it or by re-running a script's top level (which spawn does)."""
    if not data:
        return []
    added = []
    for kind, name, obj in pickle.loads(data):
        registry = REGISTRIES[kind]
        if name not in registry:
            registry.register(name)(obj)
            added.append(name)
    return added


class Carried:
    """``fn`` with the user initializers it may need, registered before its first call (picklable
    when ``fn`` is: a worker process unpickles it and calls it)."""

    def __init__(self, fn: Callable, data: bytes) -> None:
        self.fn, self.data, self.registered = fn, data, False

    def __call__(self, *args, **kwargs):
        if not self.registered:
            register_payload(self.data)
            self.registered = True
        return self.fn(*args, **kwargs)


def carry(fn: Callable) -> Callable:
    """``fn``, or when initializers were registered outside initlab, ``fn`` carrying them (see the
    module docstring): use it on a worker process's entry point in the driver."""
    data = payload()
    return Carried(fn, data) if data else fn


def forget_interactive(name: str) -> bool:
    """Unregister ``name`` if a notebook cell or the running script defined it (so that running the
    cell again redefines it instead of failing as 'registered twice'); True if it was."""
    for registry in REGISTRIES.values():
        if name in registry and module_of(registry.get(name)) == INTERACTIVE:
            del registry._items[name]   # Registry has no removal on purpose: only this case needs one
            return True
    return False
