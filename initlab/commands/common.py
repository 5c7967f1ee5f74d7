"""What several commands share: the study's settings from flags and ``--config``, and loading data."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

from initlab import data
from initlab.document import text_table
from initlab.engine.tensorboard import TensorBoardMissing, require
from initlab.experiments import study
from initlab.experiments.catalog import EXPERIMENTS
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_config_flag,
    add_flags,
    add_output_flags,
    add_workers_flag,
    configure,
    flags_of,
    prepare_out,
)
from initlab.runs import store as st
from initlab.runs.backends import BACKENDS, ClusterError, connect_ray, use_ray_token
from initlab.runs.cells import NOT_IN_CELL
from initlab.runs.plan import config_for
from initlab.runs.runner import Execution, Outcome, run_experiment
from initlab.runs.runner import stored_config as runner_stored_config


def add_study_options(p: argparse.ArgumentParser, name: str, base: study.StudyConfig) -> None:
    """The study's flags (defaults shown from ``base``), ``--config``, the output flags and the
    runner's flags."""
    add_flags(p, flags_of(study.StudyConfig), base)
    add_config_flag(p)
    add_output_flags(p, name)
    add_runner_flags(p)


def add_runner_flags(p: argparse.ArgumentParser) -> None:
    """The runner's flags, the same in every command that trains (``initlab.runs.runner.Execution``)."""
    add_workers_flag(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores // workers)")
    p.add_argument("--backend", default="local", help="local (worker processes) | ray "
                   "(pip install 'initlab[ray]')")
    p.add_argument("--address", help="Ray cluster to join, e.g. HEAD:6379 or auto (default: "
                   "$RAY_ADDRESS, else a local Ray instance)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out: skip every run "
                   "already finished with the same settings, train the rest (flags left out keep the "
                   "stored values)")
    p.add_argument("--extend", action="store_true", help="with --resume and settings other than the "
                   "stored plan's: add their runs beside the stored ones (without it, such a resume is "
                   "refused)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files "
                   "(scalars, weight and gradient histograms) to OUT/tb (pip install "
                   "'initlab[tensorboard]')")


def execution_of(args: argparse.Namespace, workers: Optional[int] = None) -> Execution:
    """The runner's settings from the flags (``workers``: the config's count, which a resume keeps),
    checked before any work: a Ray cluster named by ``--address`` (or $RAY_ADDRESS) is joined here,
    so an unreachable one is one line and exit 2."""
    check_options(args)
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r}; choose from: {', '.join(BACKENDS)}")
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if args.extend and not args.resume:
        raise UsageError("--extend is for --resume (it adds runs to a folder's stored plan)")
    address = args.address or (os.environ.get("RAY_ADDRESS") if args.backend == "ray" else None)
    if args.backend == "ray":
        if address:
            use_ray_token()            # joining a cluster: before Ray is imported, which reads the mode
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install 'initlab[ray]'") from None
        if address:
            try:
                connect_ray(address)
            except ClusterError as e:
                raise UsageError(str(e)) from None
    elif args.address:
        raise UsageError("--address is for --backend ray")
    return Execution(workers=args.workers or workers or 0, threads=args.threads, backend=args.backend, address=address,
                     tensorboard=args.tensorboard, progress=not args.quiet, extend=args.extend)


def study_config(args: argparse.Namespace, base=None) -> study.StudyConfig:
    """Defaults (``base`` or the lab's) < ``--config`` TOML < flags -> a validated StudyConfig."""
    extra = {"workers": args.workers} if getattr(args, "workers", 0) else None
    return configure(args, base or study.StudyConfig(), flags_of(study.StudyConfig), study.validate, extra=extra)


def load_data(name: str, data_dir, quiet: bool) -> data.Dataset:
    """The dataset, or a one-line UsageError saying how to supply it."""
    try:
        return data.load_dataset(name, data_dir, quiet=quiet)
    except data.DataError as e:
        raise UsageError(str(e)) from None


def stored_study_config(args):
    """The StudyConfig a ``study --resume`` starts from (flags on the command line still win)."""

    if not getattr(args, "resume", False):
        return None
    if args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if not st.exists(args.out):
        return None                       # nothing stored yet: --resume starts the study
    with st.Store(args.out, readonly=True) as store:
        plan = store.meta("plan", {})
    if plan.get("kind") != "study":
        raise UsageError(f"--out {args.out} holds a {plan.get('kind', 'sweep')}; resume it with initlab "
                         f"{plan.get('kind', 'sweep')} --resume")
    d = {k: v for k, v in plan["study"].items() if k != "seed_list"}
    cfg = config_for({k: v for k, v in d.items() if k not in NOT_IN_CELL}, d["inits"],
                     list(range(d["first_seed"], d["first_seed"] + d["seeds"])), d)
    cfg.seeds_per_stack = d.get("seeds_per_stack", 0)
    if "workers" in d:
        cfg.workers = d["workers"]
    return cfg


def check_options(args) -> None:

    if getattr(args, "tensorboard", False):

        try:
            require()
        except TensorBoardMissing as e:
            raise UsageError(str(e)) from None


def finish_stored(name: str, out: Path, outcome: Outcome) -> int:
    """After the runner: the report from the folder, its summary in the terminal, what did not finish
    and how to resume, and the exit code (0 all finished, 1 some failed, 130 interrupted)."""
    exp = EXPERIMENTS[name]
    info = outcome.info
    for line in info["corrupt"]:
        print(f"initlab: failed: {line}", file=sys.stderr)
    if info["finished"]:
        path = exp.write_report(out)
        for table in exp.summary_tables(out):
            print(text_table(*table) + "\n")
        print(f"report: {path}\n        {out / 'report.md'}")
    else:
        print(f"initlab: no run finished; nothing to report in {out}", file=sys.stderr)
    unfinished = sum(n for status, n in info["counts"].items() if status not in st.FINAL)
    if unfinished:
        why = "interrupted" if outcome.interrupted else "incomplete"
        print(f"{why}: {unfinished} run{'' if unfinished == 1 else 's'} not finished (left out of every table); "
              f"resume with initlab {name} --resume --out {out}", file=sys.stderr)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.failed or info["failed"] or info["corrupt"] else EXIT_OK


class ExperimentCommand:
    """The command of an experiment declared on the runner (``initlab.experiments.protocol``), made from
    its catalog entry: its help, its config's fields as flags, ``--config``, the output and runner flags;
    its run: defaults (or, with ``--resume``, the stored config) < ``--config`` < flags, checked by its
    ``validate``; then the runner, the report's sentences in the terminal, the report, the exit code."""

    def __init__(self, name: str) -> None:
        self.NAME = name

    def add_parser(self, sub) -> None:
        exp = EXPERIMENTS[self.NAME]
        p = sub.add_parser(self.NAME, help=exp.help, description=exp.description, epilog=EXIT_CODES_HELP)
        add_flags(p, flags_of(exp.config), exp.config())
        add_config_flag(p)
        add_output_flags(p, self.NAME)
        add_runner_flags(p)

    def run(self, args: argparse.Namespace) -> int:
        name, exp = self.NAME, EXPERIMENTS[self.NAME]
        stored = runner_stored_config(args.out, name) if args.resume and args.out else None
        base = exp.from_dict(stored or {})
        extra = {"workers": args.workers} if args.workers else None
        cfg = exp.resolve(configure(args, base, flags_of(exp.config), exp.validate, extra=extra))
        execution = execution_of(args, workers=cfg.workers)   # (--resume: the stored count unless given)
        out = prepare_out(args.out, name, args.force or args.resume)
        ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
        outcome = run_experiment(name, cfg, out, execution, resume=args.resume, force=args.force, dataset=ds)
        if outcome.info["finished"] and exp.observations is not None:
            for sentence in exp.observations(out):
                print("- " + sentence)
            print()
        return finish_stored(name, out, outcome)
