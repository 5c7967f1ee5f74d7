"""The experiment protocol: what an experiment declares so that the runner, its command, ``initlab
report`` / ``initlab runs`` and the Python API are all made from it.

An experiment on the runner is one module ``initlab/experiments/NAME.py`` that declares
``EXPERIMENT = Experiment("NAME", config=ItsConfig, plan=..., collect=..., validate=..., help=...)``
and one module ``NAME_report.py`` with ``write_report(folder)``, ``summary_table(folder)`` and,
optionally, ``summary_tables(folder)`` (every table for the terminal) and ``observations(folder)``
(the report's sentences, printed after a run). ``initlab.experiments.catalog`` finds both; nothing else
names the experiment. Its config dataclass's fields are its settings: the command's flags
(``initlab.options.flags_of``, help from ``initlab.settings``), the ``--config`` file's keys and the
Python function's keywords, all checked by ``validate`` before any work. Its ``small`` settings are
the run every test of the protocol makes (``tests/test_runner_protocol.py``), so a new experiment is
tested without anyone remembering to.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

Table = Tuple[List[str], List[List[str]]]


def _same(cfg):
    return cfg


@dataclass(frozen=True)
class Experiment:
    name: str
    write_report: Optional[Callable[[Path], Path]] = None  # result folder -> report.html, from its files alone
    summary: Optional[Callable[[Path], Table]] = None      # result folder -> (head, body) for the terminal
    plan: Optional[Callable[[Any], list]] = None                  # config -> [StudyConfig], the cells
    collect: Optional[Callable[[dict, list], Dict[str, List[dict]]]] = None   # finished runs -> tables
    to_dict: Callable[[Any], dict] = dataclasses.asdict                      # config -> config.json
    from_dict: Optional[Callable[[dict], Any]] = None   # config.json -> config (default: the config's fields)
    tables: Optional[Callable[[Path], List[Table]]] = None    # every table for the terminal (default: summary)
    prepare: Optional[Callable[[Any, Path, Any, bool], None]] = None   # (cfg, folder, dataset, resume): what
    # it computes without training, written before the runner trains (a probe, theory, a coordinate check)
    validate: Optional[Callable[[Any], None]] = None    # a flat config's check, before any work
    config: Optional[type] = None        # the flat config class: its fields are the flags and keywords
    help: str = ""                       # the command's line in ``initlab --help``
    description: str = ""                # the command's ``--help`` paragraph
    resolve: Callable[[Any], Any] = _same   # a checked config -> the config planned (settings moved into place)
    observations: Optional[Callable[[Path], List[str]]] = None   # result folder -> the report's sentences
    small: Dict[str, Any] = field(default_factory=dict)   # settings of a run of seconds on one core that still
    # plans several stacks: what the protocol, command and Python API tests run (``options.command_line``)

    def summary_tables(self, out: Path) -> List[Table]:
        return self.tables(out) if self.tables else [self.summary(out)]


def from_fields(config_class: type, d: dict):
    """``config_class`` from a stored or given dict, keys that are not its fields (computed ones) left out."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in d.items() if k in names})
