"""``initlab study``: the LAB03-1 study, every init x seed, through the run store, with a report."""
from __future__ import annotations

import sys

from initlab.commands.common import (
    add_study_options,
    execution_of,
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
from initlab.runs.runner import run_study_stored

NAME = "study"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="the LAB03-1 study: LeNet-5 on MNIST under several inits, "
                       "several seeds, with a report",
                       description="Train every init x seed (all inits of a seed see the same data "
                       "order), record curves and per-layer statistics, and write a report.",
                       epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, StudyConfig())


def run(args) -> int:
    cfg = study_config(args, base=stored_study_config(args))  # --resume reuses the stored config
    execution = execution_of(args, workers=cfg.workers)   # (--resume: the stored count unless given)
    out = prepare_out(args.out, NAME, args.force or args.resume)
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    # train what the run store (OUT/store.sqlite) lacks, then rebuild the tables from it
    result = run_study_stored(cfg, out, dataset=ds, resume=args.resume, force=args.force,
                              execution=execution)
    resume = f"resume with initlab study --resume --out {out}"
    if not result.info["finished"]:
        print(f"initlab: no run finished; nothing to report in {out}" + (f"; {resume}" if result.interrupted
                                                                          else ""), file=sys.stderr)
        return EXIT_INTERRUPTED if result.interrupted else EXIT_FAILED
    tables = report.load(out)
    html_path = report.write_report(out, f=tables)
    print(text_table(*report.summary_table(report.finished_only(tables)[0])))
    if result.interrupted:
        print(f"interrupted: the report covers the runs recorded before Ctrl-C; {resume}", file=sys.stderr)
    print(f"\nreport: {html_path}\n        {out / 'report.md'}")
    if args.tensorboard:
        print(f"tensorboard: tensorboard --logdir {out / TB_DIR}")
    for line in result.info["corrupt"]:
        print(f"initlab: failed: {line}", file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed or result.info["corrupt"] else EXIT_OK
