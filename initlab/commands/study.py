"""``initlab study``: the LAB03-1 study, every init x seed, through the run store, with a report."""
from __future__ import annotations

import sys

from initlab.commands.common import (
    add_study_options,
    check_options,
    load_data,
    stored_study_config,
    study_config,
)
from initlab.document import text_table
from initlab.engine.tensorboard import TB_DIR
from initlab.experiments import study_report as report
from initlab.experiments.study import StudyConfig
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    prepare_out,
)
from initlab.runs.study_store import run_study_stored

NAME = "study"


def add_store_flags(p) -> None:
    """``--resume`` and ``--tensorboard``: study and sweep both keep their runs in a run store."""
    p.add_argument("--resume", action="store_true", help="continue the runs in --out: skip every run "
                   "already done with the same settings, rerun the unfinished ones (flags left out "
                   "keep the stored values)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files "
                   "(scalars, weight and gradient histograms) to OUT/tb (pip install "
                   "'initlab[tensorboard]')")


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="the LAB03-1 study: LeNet-5 on MNIST under several inits, "
                       "several seeds, with a report",
                       description="Train every init x seed (all inits of a seed see the same data "
                       "order), record curves and per-layer statistics, and write a report.",
                       epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, StudyConfig())
    add_store_flags(p)


def run(args) -> int:
    cfg = study_config(args, base=stored_study_config(args))  # --resume reuses the stored config
    check_options(args)
    out = prepare_out(args.out, NAME, args.force or args.resume)
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    # train what the run store (OUT/store.sqlite) lacks, then rebuild the tables from it
    result = run_study_stored(cfg, out, dataset=ds, progress=not args.quiet, resume=args.resume,
                              force=args.force, tensorboard=args.tensorboard)
    if not result.info["finished"]:
        print(f"initlab: no run finished; nothing to report in {out}", file=sys.stderr)
        return EXIT_INTERRUPTED if result.interrupted else EXIT_FAILED
    tables = report.load(out)
    html_path = report.write_report(out, title="initlab study: initialization of "
                                    f"{cfg.model} on {cfg.dataset}", f=tables)
    print(text_table(*report.summary_table(tables)))
    if result.interrupted:
        print("interrupted: the report covers the runs recorded before Ctrl-C", file=sys.stderr)
    print(f"\nreport: {html_path}\n        {out / 'report.md'}")
    if args.tensorboard:
        print(f"tensorboard: tensorboard --logdir {out / TB_DIR}")
    for line in result.info["corrupt"]:
        print(f"initlab: failed: {line}", file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed or result.info["corrupt"] else EXIT_OK
