"""Command-line settings: flags made from config fields, ``--config`` files, output folders, errors.

An experiment's flags are its config dataclass's fields (:func:`flags_of`, with the help of
``initlab.settings``); each :class:`Flag` row feeds argparse (with the default read from the
command's own base config, so ``--help`` never states a default the command does not use), the TOML
``--config`` file (the same names with ``_``) and the config dataclass (``dest`` is a dotted path
into it: ``train.lr``). :func:`configure` resolves defaults < ``--config`` < flags and runs the
experiment's ``validate``. Every bad input is a :class:`UsageError`: one line, exit code 2.
"""
from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import datetime as _dt
import functools
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from initlab.settings import SETTINGS, flag_name

EXIT_OK = 0             # every run finished (a diverged run is a finished run)
EXIT_FAILED = 1         # some run failed; what finished is written
EXIT_USAGE = 2          # bad input, found before any work
EXIT_INTERRUPTED = 130  # Ctrl-C; what was recorded is written
EXIT_TERMINATED = 143   # SIGTERM (a batch scheduler's notice), handled as Ctrl-C is

EXIT_CODES_HELP = ("exit codes: 0 every run finished, 1 some run failed (the rest is written), "
                   "2 bad input (nothing was trained), 130 interrupted by Ctrl-C, 143 by SIGTERM (what was "
                   "recorded is written; --resume trains the rest)")


class UsageError(ValueError):
    """A one-line problem with what the user asked for (exit code 2), found before any work."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (and exit 2), like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"initlab: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Flag:
    """One setting: its flag, its dotted field path in the config, its kind and its help.

    ``kind``: a callable (int, float, str), ``"list"`` (names, space- or comma-separated; an item
    holding ``:`` is an init spec, kept whole), ``"ints"`` / ``"floats"`` (lists of numbers) or
    ``"bool"``."""
    flag: str
    dest: str
    kind: Any
    help: str
    metavar: Optional[str] = None

    @property
    def key(self) -> str:
        """The name in a TOML config file: the field name (``lr`` for ``train.lr``)."""
        return self.dest.split(".")[-1]


def _kind(annotation) -> Any:
    """A field's annotation as a :class:`Flag` kind: ``List[str]`` -> "list", ``List[int]`` -> "ints",
    ``bool`` -> "bool", ``Optional[int]`` -> int, ``Union[float, str]`` -> str (the config coerces)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (list, List):
        return {str: "list", int: "ints", float: "floats"}[args[0]]
    if typing.get_origin(annotation) is typing.Union:
        return _kind(args[0]) if len(args) == 1 else str
    return "bool" if annotation is bool else annotation


def _leaf_fields(cls, prefix: str = "") -> List[Tuple[str, Any]]:
    """(dotted path, annotation) of every field of config class ``cls``, nested dataclasses opened."""
    hints = typing.get_type_hints(cls)
    out: List[Tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaf_fields(hints[f.name], prefix + f.name + ".")
        else:
            out.append((prefix + f.name, hints[f.name]))
    return out


@functools.lru_cache(maxsize=None)
def flags_of(config_class) -> Tuple[Flag, ...]:
    """The flags of an experiment's config class, in field order: every field whose name is a setting
    (``initlab.settings.SETTINGS``: one help and metavar for the whole package) and that the class does
    not fix (its ``NOT_FLAGS``: dotted paths). The flag's kind comes from the field's annotation."""
    fixed = set(getattr(config_class, "NOT_FLAGS", ()))
    flags = []
    for dest, annotation in _leaf_fields(config_class):
        name = dest.split(".")[-1]
        if name in SETTINGS and dest not in fixed:
            setting = SETTINGS[name]
            optional = type(None) in typing.get_args(annotation)
            help_ = setting.help + (f" (none: {setting.none})" if optional and setting.none else "")
            flags.append(Flag(flag_name(name), dest, _kind(annotation), help_, setting.metavar))
    return tuple(flags)


_PYTHON_WORDS: contextvars.ContextVar[bool] = contextvars.ContextVar("initlab_python_words", default=False)
_NO_VALUE = object()


def flag(name: str, value: Any = _NO_VALUE) -> str:
    """Setting ``name`` (with ``value``) as its user wrote it, so that every message is worded once
    for both: ``--train-size 70000`` on the command line, ``train_size=70000`` in Python (inside
    :func:`python_words`); a switch given as True is ``--force`` / ``force=True``."""
    if _PYTHON_WORDS.get():
        if value is _NO_VALUE:
            return name
        return f"{name}={str(value)!r}" if isinstance(value, (str, os.PathLike)) else f"{name}={value!r}"
    if value is _NO_VALUE or value is True:
        return flag_name(name)
    return f"{flag_name(name)} {value}"


@contextlib.contextmanager
def python_words():
    """Within it, :func:`flag` words settings as Python keywords (the Python API checks its settings so)."""
    token = _PYTHON_WORDS.set(True)
    try:
        yield
    finally:
        _PYTHON_WORDS.reset(token)


def command_line(settings: Dict[str, Any]) -> List[str]:
    """Settings {name: value} as the flags that give them: {"widths": [16, 32], "conv": True} ->
    ``--widths 16 32 --conv true``."""
    argv: List[str] = []
    for name, value in settings.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif value is None:
            value = "none"
        argv += [flag_name(name), *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    return argv


def setting_help(name: str, more: str = "") -> str:
    """The one help of setting ``name`` (``initlab.settings``), for a flag a command adds by hand, with
    what this command does with it after."""
    return SETTINGS[name].help + more


def parse_bool(text: str) -> bool:
    """'true'/'yes'/'on'/'1' -> True, 'false'/'no'/'off'/'0' -> False, else an argparse error."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def optional_int(text: str) -> Optional[int]:
    """An integer, or 'none' for a setting whose None means "no limit" (e.g. --train-size none: all)."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (or none)") from None


def split_list(value) -> List[str]:
    """'a b', 'a,b' or ['a', 'b'] -> ['a', 'b']; an item holding ':' (an init spec) is kept whole."""
    out: List[str] = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        text = str(item)
        out += [text] if ":" in text else [x for x in text.replace(",", " ").split() if x]
    return out


def read_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read config {path}: {e}") from None


def get_path(obj, dest: str):
    for part in dest.split("."):
        obj = getattr(obj, part)
    return obj


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def _optional(base, dest: str) -> bool:
    """True when the config field at ``dest`` is Optional (None has a meaning there)."""
    *path, leaf = dest.split(".")
    target = get_path(base, ".".join(path)) if path else base
    return "Optional" in str({fl.name: fl.type for fl in dataclasses.fields(target)}[leaf])


def add_flags(p: argparse.ArgumentParser, flags: Sequence[Flag], base=None) -> None:
    """Add ``flags`` to ``p``, with ``(default X)`` read from ``base`` (the command's base config).
    A flag not given stays out of the namespace, so ``--config`` and the base config fill it."""
    for f in flags:
        help_ = f.help
        if base is not None:
            help_ += f" (default {_shown(get_path(base, f.dest))})"
        help_ = help_.replace("%", "%%")
        metavar = f.metavar or f.flag[2:].upper().replace("-", "_")
        if f.kind in ("list", "ints", "floats"):
            p.add_argument(f.flag, dest=f.dest, nargs="+", default=argparse.SUPPRESS, help=help_,
                           metavar=f.metavar or ("NAME" if f.kind == "list" else "N"))
        elif f.kind == "bool":
            p.add_argument(f.flag, dest=f.dest, nargs="?", const=True, type=parse_bool,
                           default=argparse.SUPPRESS, help=help_, metavar="BOOL")
        elif f.kind is int and base is not None and _optional(base, f.dest):
            p.add_argument(f.flag, dest=f.dest, type=optional_int, default=argparse.SUPPRESS, help=help_,
                           metavar=metavar)        # an Optional[int] setting: 'none' gives it back its None
        else:
            p.add_argument(f.flag, dest=f.dest, type=f.kind, default=argparse.SUPPRESS, help=help_,
                           metavar=metavar)


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="TOML file of the same settings "
                   "(flag names with _ for -); flags given on the command line win")


def add_output_flags(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--out", type=Path, help=f"output folder (default runs/<timestamp>-{command})")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already "
                   "holds results (they are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_workers_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=0, help="training processes (default 0 = one per CPU "
                   "core, 1 on a GPU); with fewer models than that, they train in this process")


def settings_of(args: argparse.Namespace, flags: Sequence[Flag]) -> Dict[str, Any]:
    """{dest: raw value}: the ``--config`` file's settings, overridden by the flags given."""
    known = {f.key: f.dest for f in flags}
    values: Dict[str, Any] = {}
    if getattr(args, "config", None):
        for key, value in read_toml(args.config).items():
            key = key.replace("-", "_")
            if key not in known:
                raise UsageError(f"unknown setting {key!r} in {args.config}; valid: "
                                 f"{', '.join(sorted(known))}")
            values[known[key]] = value
    for f in flags:
        if f.dest in vars(args):
            values[f.dest] = vars(args)[f.dest]
    return values


def apply(cfg, values: Dict[str, Any], flags: Sequence[Flag]):
    """Set each dotted ``dest`` of ``cfg`` to its value, coerced to the field's type."""
    kinds = {f.dest: f.kind for f in flags}
    for dest, value in values.items():
        *path, leaf = dest.split(".")
        target = get_path(cfg, ".".join(path)) if path else cfg
        expected = {fl.name: fl.type for fl in dataclasses.fields(target)}[leaf]
        try:
            value = coerce(value, str(expected), kinds.get(dest))
        except (TypeError, ValueError):
            raise UsageError(f"bad value for {leaf}: {value!r}") from None
        setattr(target, leaf, value)
    return cfg


def coerce(value, expected: str, kind=None):
    """A flag's or TOML value as the dataclass field's type (``expected``, its annotation text)."""
    if kind == "list" or ("List[str]" in expected):
        return split_list(value)
    if kind == "ints" or "List[int]" in expected:
        return [_int(v) for v in split_list(value)]
    if kind == "floats" or "List[float]" in expected:
        return [_float(v) for v in split_list(value)]
    if "Union[float, str]" in expected:          # a number, else a spec (validated by the experiment)
        try:
            return _float(value)
        except ValueError:
            return str(value)
    if "bool" in expected:
        return value if isinstance(value, bool) else parse_bool(str(value))
    if value is None or (isinstance(value, str) and value.lower() == "none" and "Optional" in expected):
        if "Optional" in expected:
            return None
        raise ValueError(value)
    if "int" in expected:
        return _int(value)
    if "float" in expected:
        return _float(value)
    return str(value)


def _float(value) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def _int(value) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not (math.isfinite(value)
                                                                     and value.is_integer())):
        raise ValueError(value)
    return int(value)


def configure(args: argparse.Namespace, base, flags: Sequence[Flag],
              validate: Callable[[Any], None], extra: Optional[Dict[str, Any]] = None):
    """Defaults (``base``) < ``--config`` TOML < flags on the command line (< ``extra``) -> a
    validated config. ``validate``'s ValueError becomes a one-line UsageError."""
    values = settings_of(args, flags)
    values.update(extra or {})
    cfg = apply(base, values, flags)
    try:
        validate(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return cfg


def prepare_out(out: Optional[Path], command: str, force: bool, table: str = "runs.csv") -> Path:
    """Create the output folder and prove it is writable, refusing to overwrite results."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{command}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag('out', out)} exists and is not a folder")
    if (out / table).exists() and not force:
        raise UsageError(f"{flag('out', out)} already holds results; choose another folder or pass "
                         f"{flag('force', True)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".initlab-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to {flag('out', out)}: {e.strerror or e}") from None
    return out
