"""Name -> object registries filled by a decorator or ``add`` (inits, activations, models, datasets).

A registry is a plain dict with a ``register`` decorator and a ``get`` whose error lists
the valid names, so the CLI's ``--help``, its error messages and the tests that are
parametrized over a registry all read the same source.
"""
from __future__ import annotations

import fnmatch
from typing import Callable, Dict, Generic, Iterator, List, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised by ``Registry.get`` for a name that is not registered."""


class Registry(Generic[T]):
    """A named dict of things of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register()`` uses the object's ``__name__``; ``@REG.register("x")`` names it."""
        return lambda obj: self.add(name or getattr(obj, "__name__"), obj)

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (a registry built in one place: ``MODELS.add("lenet5", LeNet5)``)."""
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}"
            ) from None

    def names(self, pattern: str = "*") -> List[str]:
        """Registered names matching a shell-style ``pattern`` (``list_models('res*')`` style)."""
        return [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
