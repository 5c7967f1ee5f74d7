"""The experiments on the runner from Python: one function per registered experiment, built from the registry.

    >>> import initlab
    >>> r = initlab.width(widths=[64, 256], log2_lrs=[-10, -8], steps=200, seeds=1)   # doctest: +SKIP
    >>> r.runs                         # runs.csv as a DataFrame  # doctest: +SKIP
    >>> r.tables["coord"]              # any table of the folder  # doctest: +SKIP

Keywords are the experiment's config fields (``initlab width --help`` names them with ``-``); they are
checked by the same ``validate`` as the command line's, trained by the same runner (``resume=True``
continues a folder), and the result is read back from the folder's files.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import pandas as pd

from initlab import files
from initlab.experiments.catalog import EXPERIMENTS, FLAT
from initlab.options import UsageError, prepare_out, python_words
from initlab.runs import runner

PathLike = Union[str, Path]


class Result:
    """A result folder of an experiment on the runner: every table as a DataFrame, the report."""

    def __init__(self, name: str, folder: Path, tables: Dict[str, pd.DataFrame], config: dict, meta: dict,
                 summary: List[pd.DataFrame], in_memory: bool) -> None:
        self.name, self.tables, self.config, self.meta, self.summary = name, tables, config, meta, summary
        self.folder = None if in_memory else folder

    @property
    def runs(self) -> pd.DataFrame:
        return self.tables.get("runs", pd.DataFrame())

    @property
    def interrupted(self) -> bool:
        return bool(self.meta.get("interrupted"))

    def __repr__(self) -> str:
        where = f" in {self.folder}" if self.folder else ""
        tables = "\n\n".join(t.to_string() for t in self.summary)
        return f"<initlab {self.name}: {len(self.runs)} runs{where}>\n{tables}"

    def _repr_html_(self) -> str:
        return "".join(t.to_html(index=False) for t in self.summary)


def _read(name: str, folder: Path, in_memory: bool) -> Result:
    tables = {p.stem: pd.DataFrame.from_records(files.read_csv(p)) for p in sorted(folder.glob("*.csv"))
              if p.stat().st_size}
    summary = [pd.DataFrame(body, columns=head) for head, body in EXPERIMENTS[name].summary_tables(folder)]
    return Result(name, folder, tables, files.read_json(folder / "config.json"),
                  files.read_json(folder / "meta.json"), summary, in_memory)


def experiment_function(name: str) -> Callable[..., Result]:
    """``initlab.NAME(*, out=None, progress=True, force=False, resume=False, workers=0, **settings)``."""
    exp = EXPERIMENTS[name]
    if exp.validate is None:
        raise ValueError(f"{name} has no flat config to take keywords for")
    fields = sorted(f.name for f in dataclasses.fields(exp.config))

    def run(*, out: Optional[PathLike] = None, progress: bool = True, force: bool = False, resume: bool = False,
            workers: int = 0, **settings: Any) -> Result:
        with python_words():             # every message names settings as keywords: steps=150, resume=True
            return _run(out, progress, force, resume, workers, settings)

    def _run(out, progress, force, resume, workers, settings) -> Result:
        unknown = sorted(set(settings) - set(fields))
        if unknown:
            raise TypeError(f"{name}() got unknown setting(s) {', '.join(map(repr, unknown))}; valid: "
                            f"{', '.join(fields)}")
        try:
            cfg = exp.from_dict({**settings, **({"workers": workers} if workers else {})})
            exp.validate(cfg)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
        execution = runner.Execution(workers=workers or getattr(cfg, "workers", 0), progress=progress)
        if out is None:
            with tempfile.TemporaryDirectory(prefix="initlab-") as tmp:
                runner.run_experiment(name, cfg, Path(tmp), execution)
                exp.write_report(Path(tmp))
                return _read(name, Path(tmp), in_memory=True)
        folder = prepare_out(Path(out), name, force or resume)
        runner.run_experiment(name, cfg, folder, execution, resume=resume, force=force)
        exp.write_report(folder)
        return _read(name, folder, in_memory=False)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (f"Run ``initlab {name}`` from Python and return its :class:`Result`. Settings (keywords): "
                   f"{', '.join(fields)}; ``out``: the result folder (None: a temporary one, read into "
                   f"memory); ``resume``: continue ``out``'s runs.")
    return run


# initlab.depth, initlab.criticality, initlab.width, ...: every experiment on the runner with a flat config
EXPERIMENT_FUNCTIONS: Dict[str, Callable[..., Result]] = {name: experiment_function(name) for name in FLAT}
