"""Name -> object registries filled by a decorator or ``add`` (inits, activations, models, datasets).

A registry is a plain dict with a ``register`` decorator and a ``get`` whose error lists
the valid names, so the CLI's ``--help``, its error messages and the tests that are
parametrized over a registry all read the same source. ``split_spec`` reads the
``name:key=value,...`` form in which inits and models are named with their settings.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable, Dict, Generic, Iterator, List, Tuple, TypeVar

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


NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")


def check_name(name: Any, kind: str) -> str:
    """``name``, if a spec (``name:key=value,...``, :func:`split_spec`) can name it: letters, digits and
    ``_``, not starting with a digit (``NAME_RE``); else a one-line ValueError, at registration rather
    than at the first spec that cannot reach it.

    Example:
        >>> check_name("scaled_normal", "initializer")
        'scaled_normal'
        >>> check_name("bad name:x", "initializer")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: cannot register initializer 'bad name:x': a name is letters, digits and _ ...
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"cannot register {kind} {name!r}: a name is letters, digits and _ (not a digit "
                         f"first), or no 'name:key=value' spec can name it")
    return name


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.1"`` / ``"1e-3"`` -> float, ``"None"`` -> None, anything else -> the string."""
    if text == "None":
        return None
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def split_spec(spec: str, kind: str) -> Tuple[str, Dict[str, Any]]:
    """``"name"`` or ``"name:key=value,key=value"`` -> ``(name, {key: parse_value(value)})``, checking
    only the form (a one-line ``ValueError`` names the bad part); whether the name and keys exist is
    the registry owner's check.

    Example:
        >>> split_spec("mlp:width=256,depth=30", "model")
        ('mlp', {'width': 256, 'depth': 30})
    """
    if not isinstance(spec, str):
        raise ValueError(f"{kind} spec must be a string like 'name:key=value'; got {spec!r}")
    head, sep, tail = spec.strip().partition(":")
    name = head.strip()
    if not NAME_RE.match(name):
        raise ValueError(f"bad {kind} spec {spec!r}: expected 'name' or 'name:key=value,...'")
    params: Dict[str, Any] = {}
    if sep and tail.strip():
        for item in tail.split(","):
            key, eq, value = (s.strip() for s in item.partition("="))
            if not eq or not NAME_RE.match(key) or not value:
                raise ValueError(f"bad {kind} spec {spec!r}: {item.strip()!r} is not key=value")
            if key in params:
                raise ValueError(f"bad {kind} spec {spec!r}: parameter {key!r} given twice")
            params[key] = parse_value(value)
    return name, params
