"""initlab from Python, for a notebook or a script: initialize any model, run a study (a probe, a
transfer), load a result folder back -- tables as pandas DataFrames, figures as matplotlib Figures.

    >>> import initlab
    >>> net = initlab.build_model("lenet5")
    >>> initlab.initialize(net, "kaiming", seed=0)["layers"]
    ['c1', 'c3', 'c5', 'f6', 'output']

A study takes the settings of ``initlab study``'s flags, with ``_`` for ``-``::

    s = initlab.study(inits=["xavier", "kaiming"], seeds=2, train_size=2000)
    s                         # in Jupyter: the summary table
    s.runs                    # one row per run: runs.csv's columns
    s.observations            # the report's sentences, by question
    s.plot_curves()           # a matplotlib Figure
    s.save("runs/mine")       # the tables, plots and report `initlab study --out runs/mine` writes
    initlab.load("runs/mine") # any study or sweep folder

Everything here is a thin layer over the experiments (:mod:`initlab.experiments`): settings are
checked by the same ``validate`` as the command line's, trained by the same code, and the tables pass
through the same CSV files (a temporary folder when ``out`` is None), so a study in memory, saved and
loaded back, has equal tables. An initializer registered with :func:`register_init` in a notebook or a
script is sent to the worker processes a study trains on (:mod:`initlab.user_inits`).
"""
from __future__ import annotations

import html
import time
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Optional, Union

import pandas as pd

from initlab import data, document, files
from initlab.api_inits import build_model, init_names, initialize, model_names, register_init
from initlab.api_results import (
    PathLike,
    configure,
    frame,
    in_memory,
    output_folder,
    shown,
    warn_if_interrupted,
    write_tables,
)
from initlab.api_stored import EXPERIMENT_FUNCTIONS, Result
from initlab.experiments import probe as probe_exp
from initlab.experiments import probe_report, study_report, transfer_report
from initlab.experiments import study as study_exp
from initlab.experiments import transfer as transfer_exp
from initlab.options import UsageError, flags_of
from initlab.runs import runner

# and one function per experiment declared on the runner (initlab.depth, initlab.width, ...: api_stored)
__all__ = ["initialize", "register_init", "build_model", "init_names", "model_names", "study", "probe",
           "transfer", "load", "Study", "Probe", "Transfer", "Result", *EXPERIMENT_FUNCTIONS]

globals().update(EXPERIMENT_FUNCTIONS)


# --------------------------------------------------------------------------------------------------
# Study
# --------------------------------------------------------------------------------------------------

class Study:
    """A study's results: tables as pandas DataFrames, the report's observations, figures.

    :func:`study` runs one; :func:`load` reads one (or a sweep) from its folder. ``runs``, ``curves``,
    ``layers`` and ``histograms`` have the columns of the CSV files of the same names (accuracies as
    fractions); ``config`` is the resolved configuration (``config.json``), ``meta`` where it ran.
    """

    def __init__(self, f: study_report.StudyFiles) -> None:
        self._f = f

    # -- what it is
    @property
    def config(self) -> dict:
        return self._f.config

    @property
    def meta(self) -> dict:
        return self._f.meta

    @property
    def folder(self) -> Optional[Path]:
        """Where it was loaded from or last saved (None: only in memory)."""
        return self._f.out

    @property
    def inits(self) -> List[str]:
        return self._f.inits

    @property
    def interrupted(self) -> bool:
        return bool(self._f.meta.get("interrupted"))

    # -- tables
    @cached_property
    def runs(self) -> pd.DataFrame:
        """One row per (init, seed): test accuracy and loss, steps to 90/97 %, times (runs.csv)."""
        return frame(self._f.runs)

    @cached_property
    def curves(self) -> pd.DataFrame:
        """Held-out accuracy/loss and running training loss per run and record step (curves.csv)."""
        return frame(self._f.curves)

    @cached_property
    def layers(self) -> pd.DataFrame:
        """Per run, record step and layer: weight, gradient and activation statistics (layers.csv)."""
        return frame(self._f.layers)

    @cached_property
    def histograms(self) -> pd.DataFrame:
        """Weight histograms on fixed bins per run, layer and histogram step (histograms.csv)."""
        return frame(self._f.hists)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per init: accuracy mean/std/min/max over seeds, steps to 90/97 %, initial loss."""
        return frame(study_report.summary_rows(self._f))

    @property
    def observations(self) -> Dict[str, List[str]]:
        """The report's sentences, each computed from the measurements, by the question they answer."""
        obs = study_report.observations(self._f)
        return {question: obs[key] for key, question in study_report.QUESTIONS.items()}

    # -- figures
    def plot_curves(self):
        """Held-out accuracy and training loss against step, mean and min–max band over seeds."""
        return shown(study_report.figure_curves(self._f))

    def plot_weights(self, seed: Optional[int] = None):
        """Weight histograms per init (rows) and layer (columns) over training, for one seed (default
        the first); None when the study recorded no histograms."""
        return shown(study_report.figure_weight_grid(self._f, seed))

    def plot_layer_scales(self):
        """Activation std and gradient norm per layer at initialization, dead ReLUs over training."""
        return shown(study_report.figure_layer_scales(self._f))

    # -- files
    def save(self, folder: PathLike, force: bool = False) -> Path:
        """Write the tables, plots and report that ``initlab study --out FOLDER`` writes (not its run
        store, which only ``--resume`` reads); ``initlab report FOLDER`` rebuilds the report from them
        and :func:`load` reads them back. A folder that holds results already is refused unless
        ``force``. Returns the folder."""
        out = output_folder(folder, "study", force)
        f = self._f
        write_tables(out, f.config, f.meta, {"curves": f.curves, "layers": f.layers,
                                              "histograms": f.hists, "runs": f.runs})
        f.out = out
        self._write_report()
        return out

    def _write_report(self) -> None:
        study_report.write_report(self._f.out)

    # -- display
    def _title(self) -> str:
        seeds = sorted({r["seed"] for r in self._f.runs})
        where = f", in {self.folder}" if self.folder else ""
        note = ", interrupted" if self.interrupted else ""
        return f"Study: {len(self.inits)} inits x {len(seeds)} seeds{note}{where}"

    def __repr__(self) -> str:
        return f"{self._title()}\n{document.text_table(*study_report.summary_table(self._f))}"

    def _repr_html_(self) -> str:
        settings = html.escape(study_report.settings_line(self._f))
        return (f"<p><b>{html.escape(self._title())}</b><br>{settings}</p>"
                + document.html_table(*study_report.summary_table(self._f)))


def study(*, out: Optional[PathLike] = None, progress: bool = True, force: bool = False,
          **settings) -> Study:
    """Run a study -- every init x seed trained, recorded and summed up -- and return its :class:`Study`.

    Settings are keywords named like ``initlab study``'s flags (``inits``, ``seeds``, ``first_seed``,
    ``model``, ``activation``, ``pool``, ``c3_table``, ``bias_init``, ``dataset``, ``data_dir``,
    ``device``, ``seeds_per_stack``, ``epochs``, ``lr``, ``batch_size``, ``optimizer``, ``schedule``,
    ``weight_decay``, ``label_smoothing``, ``normalize``, ``train_size``, ``record_every``) plus
    ``workers`` (training processes; 0 = one per core); what is left out is the lab's default. An
    unknown keyword is a TypeError, a bad value a ValueError (``initlab.options.UsageError``),
    both before any training.

    Args:
        out: a folder to write the tables, plots and report into (as :meth:`Study.save`), or None to
            keep everything in memory.
        progress: show a progress bar.
        force: write into an ``out`` that holds results already.

    An initializer of yours (:func:`register_init`) works with ``workers`` > 1 too: it is sent to the
    worker processes. In a script, call ``study`` under ``if __name__ == "__main__":`` (the workers
    import the script again). Ctrl-C stops training and keeps what was recorded (with a warning).

    Example (two training steps):
        >>> import initlab
        >>> s = initlab.study(inits=["zeros", "kaiming"], seeds=1, train_size=64, record_every=1,
        ...                   workers=1, progress=False)
        >>> s.runs[["init", "seed", "steps"]]
              init  seed  steps
        0    zeros     0      2
        1  kaiming     0      2
        >>> list(s.observations)
        ['Why do better-scaled initializations train faster?', 'Why do all-zero weights stop learning?']
        >>> s.observations['Why do all-zero weights stop learning?'][1]
        'After 2 steps the weights of c1, c3, c5, f6, output are still exactly 0 (largest |w| = 0).'
    """
    cfg = configure("study", study_exp.StudyConfig(), flags_of(study_exp.StudyConfig), settings, study_exp.validate,
                     extra=("workers",))
    folder = output_folder(out, "study", force)
    ds = data.load_dataset(cfg.dataset, cfg.data_dir, quiet=not progress)

    def write(where: Path) -> None:                  # the runner, as `initlab study --out where` trains
        outcome = runner.run_study_stored(cfg, where, dataset=ds, force=True, execution=runner.Execution(
            workers=cfg.workers, progress=bool(progress)))
        if outcome.failed:
            raise RuntimeError(f"training failed: {'; '.join(outcome.failed)}")

    if folder is None:
        s = Study(in_memory(write, study_report.load))
        s._f.out = None
    else:
        write(folder)
        s = Study(study_report.load(folder))
        s._write_report()
    warn_if_interrupted(s.meta, "study")
    return s


# --------------------------------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------------------------------

class Probe:
    """A signal-propagation probe's results (no training): per-layer forward and backward std next to
    the variance formula's prediction. ``layers`` has probe.csv's columns (one row per init x activation
    x seed x layer), ``runs`` runs.csv's (one per init x activation x seed)."""

    def __init__(self, folder: Path) -> None:
        self.config = files.read_json(folder / "config.json")
        self.meta = files.read_json(folder / "meta.json")
        self._rows = files.read_table(folder, "probe")
        self._runs = files.read_table(folder, "runs")
        self.folder: Optional[Path] = folder

    @cached_property
    def layers(self) -> pd.DataFrame:
        return frame(self._rows)

    @cached_property
    def runs(self) -> pd.DataFrame:
        return frame(self._runs)

    @property
    def observations(self) -> List[str]:
        """The report's sentences: which inits keep the signal, how close the formula came."""
        return probe_report.observations(self._rows, self.config["inits"], self.config["activations"])

    def table(self):
        return probe_report.ratio_table(self._rows, self.config["inits"], self.config["activations"])

    def plot(self):
        """Forward and gradient std per layer, measured and predicted, one column per activation."""
        return shown(probe_report.figure(self._rows, self.config["inits"], self.config["activations"]))

    def save(self, folder: PathLike, force: bool = False) -> Path:
        """Write what ``initlab probe --out FOLDER`` writes; returns the folder."""
        out = output_folder(folder, "probe", force)
        write_tables(out, self.config, self.meta, {"probe": self._rows, "runs": self._runs})
        probe_report.write_report(out)
        self.folder = out
        return out

    def __repr__(self) -> str:
        return f"Probe: last/first forward std over the hidden layers\n{document.text_table(*self.table())}"

    def _repr_html_(self) -> str:
        return ("<p><b>Probe</b>: last/first forward std over the hidden layers (✓ = within x2 at every "
                f"layer)<br>{html.escape(probe_report.describe(self.config))}</p>"
                + document.html_table(*self.table()))


def probe(*, out: Optional[PathLike] = None, progress: bool = True, force: bool = False,
          **settings) -> Probe:
    """Run a signal-propagation probe (``initlab probe``) and return its :class:`Probe`.

    Settings are named like ``initlab probe``'s flags: ``inits``, ``activations``, ``width``, ``depth``,
    ``conv``, ``images``, ``seeds``, ``first_seed``, ``bias_init``, ``dataset``, ``data_dir``.

    Example:
        >>> import initlab
        >>> p = initlab.probe(inits=["xavier", "kaiming"], activations=["relu"], depth=3, width=16,
        ...                   images=16, seeds=1, progress=False)
        >>> p.runs[["init", "activation", "seed"]]
              init activation  seed
        0   xavier       relu     0
        1  kaiming       relu     0
    """
    cfg = configure("probe", probe_exp.ProbeConfig(), flags_of(probe_exp.ProbeConfig), settings, probe_exp.validate)
    folder = output_folder(out, "probe", force)
    ds = data.load_dataset(cfg.dataset, cfg.data_dir, quiet=not progress)
    t0 = time.perf_counter()
    rows = probe_exp.run_probe(cfg, dataset=ds, progress=progress)
    seconds = time.perf_counter() - t0

    def write(where: Path) -> None:
        probe_exp.write_tables(where, cfg, rows, seconds)

    if folder is None:
        p = in_memory(write, Probe)
        p.folder = None
        return p
    write(folder)
    p = Probe(folder)
    probe_report.write_report(folder)
    return p


# --------------------------------------------------------------------------------------------------
# Transfer
# --------------------------------------------------------------------------------------------------

class Transfer:
    """A transfer experiment's results: a pretrained network as an initialization, against scratch
    inits, at several amounts of target data. ``runs``, ``curves`` and ``pretrain`` have the columns of
    the CSV files of the same names."""

    def __init__(self, folder: Path) -> None:
        self._f = transfer_report.load_tables(folder)

    @property
    def config(self) -> dict:
        return self._f["config"]

    @property
    def meta(self) -> dict:
        return self._f["meta"]

    @property
    def folder(self) -> Optional[Path]:
        return self._f["out"]

    @cached_property
    def runs(self) -> pd.DataFrame:
        return frame(self._f["runs"])

    @cached_property
    def curves(self) -> pd.DataFrame:
        return frame(self._f["curves"])

    @cached_property
    def pretrain(self) -> pd.DataFrame:
        return frame(self._f["pretrain"])

    @cached_property
    def summary(self) -> pd.DataFrame:
        """One row per (target size, init): accuracy over seeds, early accuracy, steps to 90/97 %."""
        return frame(transfer_report.summary_rows(self._f))

    @property
    def observations(self) -> List[str]:
        """The report's sentences: where pretraining helps, and where it stops mattering."""
        return transfer_report.observations(self._f)

    def plot_curves(self):
        """Held-out accuracy against step, one panel per target size."""
        return shown(transfer_report.figure_curves(self._f))

    def plot_sizes(self):
        """Early and final accuracy against the number of target images."""
        return shown(transfer_report.figure_sizes(self._f))

    def save(self, folder: PathLike, force: bool = False) -> Path:
        """Write the tables, plots and report ``initlab transfer --out FOLDER`` writes (checkpoints only
        where the run itself was given ``out``); returns the folder."""
        out = output_folder(folder, "transfer", force)
        write_tables(out, self.config, self.meta, {"curves": self._f["curves"],
                                                    "pretrain": self._f["pretrain"],
                                                    "runs": self._f["runs"]})
        self._f["out"] = out
        transfer_report.write_report(out)
        return out

    def __repr__(self) -> str:
        return f"Transfer\n{document.text_table(*transfer_report.summary_table(self._f))}"

    def _repr_html_(self) -> str:
        return (f"<p><b>Transfer</b><br>{html.escape(transfer_report.describe(self._f))}</p>"
                + document.html_table(*transfer_report.summary_table(self._f)))


def transfer(*, out: Optional[PathLike] = None, progress: bool = True, force: bool = False,
             **settings) -> Transfer:
    """Run a transfer experiment (``initlab transfer``) and return its :class:`Transfer`.

    Settings are named like ``initlab transfer``'s flags, with ``source`` and ``target`` for ``--from``
    and ``--to``: ``source``, ``target``, ``model``, ``activation``, ``pretrain_epochs``,
    ``pretrain_size``, ``from_checkpoint``, ``modes``, ``inits``, ``target_sizes``, ``min_steps``,
    ``target_epochs``, ``seeds``, ``first_seed``, ``lr``, ``batch_size``, ``record_every``, ``device``.
    With ``out``, the pretrained checkpoints are kept there too (``pretrain.csv`` names them).

    Example (a few steps of pretraining and of training):
        >>> import initlab
        >>> t = initlab.transfer(source="fashion_mnist", target="mnist", pretrain_size=256,
        ...                      target_sizes=[64], min_steps=4, seeds=1, modes=["finetune"],
        ...                      inits=["kaiming"], record_every=4, progress=False)
        >>> t.runs[["init", "kind", "target_images", "steps"]]
               init      kind  target_images  steps
        0  finetune  transfer             64      4
        1   kaiming   scratch             64      4
    """
    cfg = configure("transfer", transfer_exp.TransferConfig(), flags_of(transfer_exp.TransferConfig), settings,
                     transfer_exp.validate)
    if cfg.from_checkpoint:
        try:
            _, info = transfer_exp.load_checkpoint(cfg.from_checkpoint, cfg.model, cfg.model_options())
        except ValueError as e:
            raise UsageError(str(e)) from None
        cfg.source = str(info["dataset"])   # the resolved config names the real source
    folder = output_folder(out, "transfer", force)
    execution = runner.Execution(progress=progress)
    if folder is None:
        t = in_memory(lambda where: runner.run_experiment("transfer", cfg, where, execution), Transfer)
        t._f["out"] = None
    else:
        runner.run_experiment("transfer", cfg, folder, execution, force=force)
        t = Transfer(folder)
        transfer_report.write_report(folder)
    warn_if_interrupted(t.meta, "transfer")
    return t


# --------------------------------------------------------------------------------------------------
# Loading a folder
# --------------------------------------------------------------------------------------------------

def load(folder: PathLike) -> Union[Study, Probe, Transfer]:
    """The results in ``folder``, written by :meth:`Study.save` or by a command: a :class:`Study`
    for ``initlab study``, ``sweep`` and ``bonus`` folders, a :class:`Probe` or a :class:`Transfer`
    for theirs.

    Example:
        >>> import initlab, tempfile
        >>> s = initlab.study(inits=["kaiming"], seeds=1, train_size=64, workers=1, progress=False)
        >>> folder = s.save(tempfile.mkdtemp() + "/tiny")
        >>> initlab.load(folder).runs.equals(s.runs)
        True
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    kind = files.experiment_of(folder)
    if kind == "probe":
        return Probe(folder)
    if kind == "transfer":
        return Transfer(folder)
    if kind in ("study", "bonus") and (folder / "runs.csv").exists():
        return Study(study_report.load(folder))
    if kind is not None and (folder / "runs.csv").exists():     # grid, depth: one table, no object yet
        raise ValueError(f"{folder} holds a {kind} result, which initlab.load does not read (study, sweep, "
                         f"bonus, probe, transfer); its table: pandas.read_csv('{folder / 'runs.csv'}')")
    raise ValueError(f"{folder} holds no initlab results (no meta.json and runs.csv); a sweep still "
                     f"running has its tables written by `initlab report {folder}`")
