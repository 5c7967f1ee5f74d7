"""Command-line settings shared by every command: flag tables, ``--config`` files, output folders, errors.

A flag table is a list of :class:`Flag` rows; one row feeds argparse (with the default read from the
command's own base config, so ``--help`` never states a default the command does not use), the TOML
``--config`` file (the same names with ``_``) and the config dataclass (``dest`` is a dotted path
into it: ``train.lr``). :func:`configure` resolves defaults < ``--config`` < flags and runs the
experiment's ``validate``. Every bad input is a :class:`UsageError`: one line, exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

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


# The study's settings: study, bonus, grid and sweep take them all.
STUDY_FLAGS = [
    Flag("--inits", "inits", "list", "initializations to compare (names with optional :k=v params), "
         "e.g. 'zeros uniform normal xavier kaiming' or 'kaiming_uniform:mode=fan_out'"),
    Flag("--seeds", "seeds", int, "number of seeds; each gives every init the same data order"),
    Flag("--first-seed", "first_seed", int, "first seed"),
    Flag("--model", "model", str, "model, optionally with settings: mlp:width=256,depth=30, "
         "two_layer_fc:hidden=4000 (initlab summary --model SPEC shows its layers)", "SPEC"),
    Flag("--activation", "activation", str, "activation after each hidden layer"),
    Flag("--pool", "pool", str, "LeNet-5 subsampling: avg (the paper's) or max"),
    Flag("--c3-table", "c3_table", "bool", "use LeNet-5's partial C3 connection table (Table I)"),
    Flag("--width", "width", int, "--model mlp: units per hidden layer (none: 500)", "N"),
    Flag("--depth", "depth", int, "--model mlp: hidden layers (none: 2)", "N"),
    Flag("--conv", "conv", "bool", "--model mlp: 3x3 convolutions with padding 1 instead of linear layers"),
    Flag("--parametrization", "parametrization", str, "width parametrization: sp, mup:base_width=64 "
         "(Tensor Programs V: hidden Adam lr x base/width, readout W x base/width, zero-initialized) or "
         "ntk:base_width=64 (forward x sqrt(base/fan_in)); --model mlp or two_layer_fc", "SPEC"),
    Flag("--bias-init", "bias_init", str, "constant every bias starts at, or a distribution it is drawn "
         "from (normal:std=S, uniform:low=A,high=B)", "B"),
    Flag("--dataset", "dataset", str, "dataset name"),
    Flag("--data-dir", "data_dir", str, "folder holding the dataset's files (the four IDX files, raw "
         "or .gz); else $INITLAB_DATA_DIR, the cache, then the download sources"),
    Flag("--device", "device", str, "auto | cpu | cuda (auto: cuda when available)"),
    Flag("--seeds-per-stack", "seeds_per_stack", int, "seeds trained together in one batched stack "
         "(0 = all; smaller stacks lose less to Ctrl-C and use less memory)"),
    Flag("--epochs", "train.epochs", int, "passes over the training images"),
    Flag("--lr", "train.lr", float, "learning rate"),
    Flag("--batch-size", "train.batch_size", int, "images per step"),
    Flag("--optimizer", "train.optimizer", str, "adam | adamw | sgd"),
    Flag("--schedule", "train.schedule", str, "constant | onecycle"),
    Flag("--weight-decay", "train.weight_decay", float, "weight decay"),
    Flag("--label-smoothing", "train.label_smoothing", float, "cross-entropy label smoothing"),
    Flag("--normalize", "train.normalize", "bool", "standardize pixels with the dataset's mean/std"),
    Flag("--train-size", "train.train_size", int, "train on the first N images of a seeded shuffle "
         "(none: all)"),
    Flag("--record-every", "train.record_every", int, "steps between record points, 4x denser over "
         "the first two"),
    Flag("--hist-moments", "train.hist_moments", int, "weight histograms at this many moments spread over "
         "the run (first and last step included)", "N"),
]


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
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / table).exists() and not force:
        raise UsageError(f"--out {out} already holds results; choose another folder or pass --force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".initlab-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out
