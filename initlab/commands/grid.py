"""``initlab grid``: init x activation -> final test accuracy, Mishkin & Matas 2015 style."""
from __future__ import annotations

import argparse
import sys
import time

from initlab.activations import ACTIVATIONS
from initlab.commands.common import add_study_options, load_data, study_config
from initlab.document import text_table
from initlab.experiments import grid, study
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_OK,
    UsageError,
    prepare_out,
    split_list,
)

NAME = "grid"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="init x activation table of final test accuracy (n/c where "
                       "training did not converge), Mishkin & Matas 2015 style",
                       description="Train every init x seed once per activation (one batched study per "
                       "activation) and write grid.csv and a table (grid.md, report.html). Takes the "
                       "study flags; --activations replaces --activation.", epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, study.StudyConfig(inits=list(grid.GRID_INITS)))
    p.add_argument("--activations", nargs="+", metavar="NAME", default=argparse.SUPPRESS,
                   help=f"activations, the columns (default: {' '.join(grid.GRID_ACTIVATIONS)})")


def run(args) -> int:
    if "activation" in vars(args):
        raise UsageError("grid takes --activations (the columns), not --activation")
    cfg = study_config(args, base=study.StudyConfig(inits=list(grid.GRID_INITS)))
    activations = split_list(getattr(args, "activations", grid.GRID_ACTIVATIONS))
    for a in activations:
        if a not in ACTIVATIONS:
            raise UsageError(f"unknown activation {a!r}; choose from: {', '.join(ACTIVATIONS.names())}")
    if not activations:
        raise UsageError("--activations needs at least one activation")
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    try:
        grid.preflight(cfg, activations, ds)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = prepare_out(args.out, NAME, args.force, table="grid.csv")
    t0 = time.perf_counter()
    rows = grid.run_grid(cfg, activations, dataset=ds, progress=not args.quiet)
    command = "initlab " + " ".join(sys.argv[1:]) if sys.argv[1:2] == [NAME] else None
    path = grid.write_grid(out, cfg, activations, rows, command=command,
                           seconds=time.perf_counter() - t0)
    print(text_table(*grid.grid_table(rows, cfg.inits, activations)))
    print(f"\ntable: {path}\n       {out / 'report.html'}")
    return EXIT_OK
