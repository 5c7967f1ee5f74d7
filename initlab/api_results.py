"""What the Python API's functions share: keyword settings checked as the command line checks them,
result folders written and read back, figures that Jupyter shows."""
from __future__ import annotations

import functools
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import pandas as pd

from initlab import files
from initlab.options import Flag, UsageError, apply, prepare_out, python_words

PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------------
# Settings: keyword arguments named like the command's flags
# --------------------------------------------------------------------------------------------------

def configure(function: str, base, flags: Sequence[Flag], settings: Dict[str, Any],
               validate: Callable[[Any], None], extra: Sequence[str] = ()):
    """``base`` with ``settings`` (keyword -> value; the flag table's names) applied and validated.
    An unknown keyword is a TypeError listing the valid ones; a bad value a UsageError (ValueError)."""
    dests = {f.key: f.dest for f in flags}
    dests.update({k: k for k in extra})
    unknown = sorted(set(settings) - set(dests))
    if unknown:
        raise TypeError(f"{function}() got unknown setting(s) {', '.join(map(repr, unknown))}; valid: "
                        f"{', '.join(sorted(dests))}")
    with python_words():                 # messages name settings as keywords: lr=0, not --lr 0
        try:
            cfg = apply(base, {dests[k]: v for k, v in settings.items()}, flags)
            validate(cfg)
        except ValueError as e:
            raise UsageError(str(e)) from None
    return cfg


def output_folder(out: Optional[PathLike], command: str, force: bool) -> Optional[Path]:
    """The output folder, created and checked before any training (None: keep the results in memory)."""
    if out is None:
        return None
    with python_words():
        return prepare_out(Path(out), command, force)


def frame(rows: List[dict]) -> pd.DataFrame:
    """A CSV table's rows as a DataFrame with the CSV file's columns, in its order."""
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return pd.DataFrame.from_records(rows, columns=columns)


def in_memory(write: Callable[[Path], None], load: Callable[[Path], Any]):
    """Write a result folder into a temporary one and load it back: the tables as the files hold them."""
    with tempfile.TemporaryDirectory(prefix="initlab-") as tmp:
        write(Path(tmp))
        return load(Path(tmp))


def write_tables(out: Path, config: dict, meta: dict, tables: Dict[str, List[dict]]) -> None:
    """A result folder's files as loaded (meta.json as it was: where and with what it ran)."""
    files.write_json(out / "config.json", config)
    files.write_json(out / "meta.json", meta)
    for name, rows in tables.items():          # runs last: its presence marks a finished folder
        files.atomic_write_text(out / f"{name}.csv", files.rows_to_csv(rows))


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)    # laid out already (tight_layout): one draw
    return buf.getvalue()


def shown(fig):
    """``fig`` (a matplotlib Figure, or None) with a PNG for Jupyter to show when a cell returns it.
    These Figures are made without pyplot -- no global figure list, nothing left open, no backend
    switched, shown once -- so pyplot's inline backend, which teaches Jupyter to draw Figures, may
    never have been loaded: the figure brings its own ``_repr_png_``."""
    if fig is not None:
        fig._repr_png_ = functools.partial(_png, fig)
    return fig


def warn_if_interrupted(meta: dict, what: str) -> None:
    if meta.get("interrupted"):
        warnings.warn(f"the {what} was interrupted: the tables hold the runs recorded so far",
                      stacklevel=3)
