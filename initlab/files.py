"""The result-folder layer: atomic writes, CSV tables, JSON files and the environment stamp.

Every file an experiment writes goes through here: written to a temporary file in the same folder,
flushed, and renamed over the target, so a reader (or a crash) never sees half a file.
"""
from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import math
import os
import platform
import re
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy
import torch


def umask() -> int:
    """The process's file-creation mask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder, flushed to disk, and rename: a reader (or a crash)
    never sees half a file. The file gets the permissions any tool would give it (0666 less the
    umask), not the temp file's private 0600."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes (a checkpoint, an image): the same temp file, fsync, rename
    and umask's mode."""
    atomic_write(path, lambda f: f.write(data))


def torch_bytes(obj) -> bytes:
    """``torch.save(obj)`` as bytes (what a checkpoint file holds), for :func:`atomic_write_bytes` or
    a checksum before the file is written."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(path: Path, obj) -> None:
    """``torch.save(obj, path)``, atomically and with the umask's mode (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, torch_bytes(obj))


def atomic_write(path: Path, write) -> None:
    """The one atomic writer every file of initlab goes through (tables, reports, checkpoints, the data
    cache): ``write(f)`` fills a temp file in the same folder, which is flushed to disk, given the
    umask's mode (0666 less the umask) and renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rows_to_csv(rows: List[dict]) -> str:
    if not rows:
        return ""
    cols: List[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows([_fmt(row.get(k)) for k in cols] for row in rows)
    return buf.getvalue()


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(round(v, 7))
    return v


def read_csv(path: Path) -> List[dict]:
    """Read one of initlab's CSV tables back with numbers as numbers ('' -> None). Parsed a column
    at a time (twice as fast on the study's tables); in a ragged file a missing value is None and an
    extra one is dropped."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = [row for row in reader if row]
    if header is None:
        return []
    if any(len(row) != len(header) for row in rows) or len(set(header)) != len(header):
        with open(path, newline="") as f:
            return [{k: _parse(v) if isinstance(v, str) else None for k, v in row.items() if k is not None}
                    for row in csv.DictReader(f)]
    columns = [_parse_column(col) for col in zip(*rows)]
    return [dict(zip(header, values)) for values in zip(*columns)]


def _parse_column(values: Tuple[str, ...]) -> list:
    """``_parse`` of every value of a column: whole-column int() or float() where that gives the same
    result (a float column: every value has a '.'), else once per distinct value."""
    try:
        return [int(v) for v in values]
    except ValueError:
        pass
    if all("." in v for v in values):
        try:
            return [float(v) for v in values]
        except ValueError:
            pass
    parsed = {v: _parse(v) for v in set(values)}
    return [parsed[v] for v in values]


def _parse(v: str):
    if v == "":
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def environment() -> dict:
    """Hardware and library versions, stored with every result."""
    return {
        "torch": torch.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }




# --------------------------------------------------------------------------------------------------
# Result folders
# --------------------------------------------------------------------------------------------------

def initlab_version() -> str:
    try:
        return importlib.metadata.version("initlab")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(out: Path, experiment: str, config: dict, tables: Dict[str, List[dict]],
                 meta: Optional[dict] = None) -> None:
    """A result folder: ``config.json`` (the resolved configuration), ``meta.json`` (which experiment
    wrote it, the initlab version, the environment, and ``meta``), then each table as ``NAME.csv``,
    in the given order -- put ``runs`` last: its presence marks a folder that holds results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    write_json(out / "meta.json", {"experiment": experiment, "initlab": initlab_version(),
                                   "environment": environment(), **(meta or {})})
    for name, rows in tables.items():
        atomic_write_text(out / f"{name}.csv", rows_to_csv(rows))


class CorruptTableError(ValueError):
    """A result table holding a value no run can produce (an accuracy outside [0, 1]): the file was
    damaged or edited. One line; ``initlab`` reports it and exits 1."""


ACCURACY_COLUMN = re.compile(r"(?:^|_)acc(?:uracy)?(?:_|$)")   # test_acc, heldout_acc, acc_mean, acc_at_0


def check_table(path: Path, rows: List[dict]) -> List[dict]:
    """``rows`` of the table at ``path``, unless one holds an impossible value: every accuracy column
    (``ACCURACY_COLUMN``: a fraction of images classified right, or a mean / std / min of such
    fractions) must be empty, NaN or within [0, 1]; else :class:`CorruptTableError`.

    Example:
        >>> check_table(Path("runs.csv"), [{"test_acc": 0.98}, {"test_acc": None}])
        [{'test_acc': 0.98}, {'test_acc': None}]
        >>> check_table(Path("runs.csv"), [{"test_acc": 1.7}])
        Traceback (most recent call last):
        ...
        initlab.files.CorruptTableError: runs.csv: test_acc 1.7 outside [0, 1] (a corrupt or edited file)
    """
    columns = [k for k in (rows[0] if rows else {}) if ACCURACY_COLUMN.search(k)]
    for row in rows:
        for k in columns:
            v = row.get(k)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise CorruptTableError(f"{path}: {k} {v} outside [0, 1] (a corrupt or edited file)")
    return rows


def read_table(out: Path, name: str) -> List[dict]:
    """``NAME.csv`` of a result folder ([] when missing or empty), checked by :func:`check_table`
    (a corrupt or edited file raises :class:`CorruptTableError`), so no report shows an accuracy of
    170 %."""
    path = Path(out) / f"{name}.csv"
    return check_table(path, read_csv(path)) if path.exists() and path.stat().st_size else []


# Folders written before meta.json named the experiment: the file that only that experiment writes.
_MARKERS = (("pretrain.csv", "transfer"), ("probe.csv", "probe"), ("grid.csv", "grid"),
            ("bonus.png", "bonus"), ("runs.csv", "study"))


def experiment_of(out: Path) -> Optional[str]:
    """Which experiment wrote the result folder ``out`` (None: not a result folder)."""
    out = Path(out)
    name = read_json(out / "meta.json").get("experiment")
    if name:
        return name
    return next((exp for marker, exp in _MARKERS if (out / marker).exists()), None)
