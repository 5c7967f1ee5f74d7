"""``initlab grid``: init x activation -> final test accuracy, Mishkin & Matas 2015 style."""
from __future__ import annotations

import argparse

from initlab.activations import ACTIVATIONS
from initlab.commands.common import add_study_options, execution_of, finish_stored, load_data, study_config
from initlab.experiments import grid
from initlab.options import EXIT_CODES_HELP, UsageError, prepare_out, setting_help, split_list
from initlab.runs import runner

NAME = "grid"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="init x activation table of final test accuracy (n/c where "
                       "training did not converge), Mishkin & Matas 2015 style; resumable",
                       description="Train every init x seed once per activation (one batched study per "
                       "activation) and write runs.csv and a table (grid.md, report.html). Takes the "
                       "study flags; --activations replaces --activation.", epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, grid.GridConfig().study)
    p.add_argument("--activations", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help=setting_help("activations", f", the columns (default: {' '.join(grid.GRID_ACTIVATIONS)})"))


def run(args) -> int:
    if "activation" in vars(args):
        raise UsageError("grid takes --activations (the columns), not --activation")
    stored = runner.stored_config(args.out, NAME) if args.resume and args.out else None
    base = grid.from_dict(stored) if stored else grid.GridConfig()
    cfg = grid.GridConfig(study_config(args, base=base.study),
                          split_list(getattr(args, "activations", base.activations)))
    for a in cfg.activations:
        if a not in ACTIVATIONS:
            raise UsageError(f"unknown activation {a!r}; choose from: {', '.join(ACTIVATIONS.names())}")
    try:
        grid.validate(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    execution = execution_of(args, workers=cfg.study.workers)   # (--resume: the stored count unless given)
    ds = load_data(cfg.study.dataset, cfg.study.data_dir, args.quiet)
    try:
        grid.preflight(cfg.study, cfg.activations, ds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = prepare_out(args.out, NAME, args.force or args.resume)
    outcome = runner.run_experiment(NAME, cfg, out, execution, resume=args.resume, force=args.force,
                                    dataset=ds)
    return finish_stored(NAME, out, outcome)
