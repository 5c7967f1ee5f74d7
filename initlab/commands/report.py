"""``initlab report DIR``: rebuild the report of any result folder from its files."""
from __future__ import annotations

import sys
from pathlib import Path

from initlab import files
from initlab.document import text_table
from initlab.experiments import study_report
from initlab.experiments.catalog import EXPERIMENTS, STORED
from initlab.options import EXIT_FAILED, EXIT_OK, UsageError
from initlab.runs import experiment_sweep, runner
from initlab.runs import store as st
from initlab.runs.rebuild import rebuild, write_reports
from initlab.runs.study_store import counts_line

NAME = "report"


def add_parser(sub) -> None:
    r = sub.add_parser(NAME, help="rebuild the report of a result folder",
                       description="Rewrite report.md / report.html and the plots of any folder an "
                                   "initlab command wrote (study, bonus, grid, probe, transfer, sweep), "
                                   "from its tables (e.g. after an upgrade of initlab).")
    r.add_argument("dir", type=Path, help="the folder an initlab command wrote")


def run(args) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    if not st.writable(args.dir):
        raise UsageError(f"{args.dir} is read-only: the report is written into the folder; copy it "
                         f"(cp -r {args.dir} COPY) and run initlab report COPY, or list its runs with "
                         f"initlab runs {args.dir}")
    kind = runner.stored_kind(args.dir)
    if kind in STORED:        # an experiment on the runner: its tables rebuilt from the store first
        info = runner.collect(args.dir)
        if not info["finished"]:
            raise UsageError(f"{args.dir} holds no finished runs yet ({counts_line(info['counts'])})")
        path = EXPERIMENTS[kind].write_report(args.dir)
        tables = EXPERIMENTS[kind].summary_tables(args.dir)
    elif st.exists(args.dir):   # a study or sweep folder: rebuild its tables first
        info = rebuild(args.dir)
        if not info["finished"]:
            raise UsageError(f"{args.dir} holds no finished runs yet ({counts_line(info['counts'])})")
        path = write_reports(args.dir, info, title=None if info["kind"] == "study"
                                   else f"initlab sweep: {Path(args.dir).name}")
        tables = [study_report.summary_table(study_report.load(args.dir))]
    elif files.read_json(args.dir / "config.json").get("experiment") in EXPERIMENTS:   # a sweep of one
        config = files.read_json(args.dir / "config.json")
        path = experiment_sweep.write_index(args.dir, config["experiment"], config["combinations"])
        tables = [(["combinations", "finished runs"], [[len(config["combinations"]),
                                                        len(files.read_table(args.dir, "runs"))]])]
    else:
        name = files.experiment_of(args.dir)
        if name not in EXPERIMENTS or not (args.dir / "config.json").exists():
            raise UsageError(f"{args.dir} holds no initlab results (no config.json and runs.csv)")
        path = EXPERIMENTS[name].write_report(args.dir)
        tables = EXPERIMENTS[name].summary_tables(args.dir)
    print("\n\n".join(text_table(*table) for table in tables))
    print(f"\nreport: {path}")
    corrupt = info["corrupt"] if st.exists(args.dir) else []
    for line in corrupt:
        print(f"initlab: failed: {line}", file=sys.stderr)
    return EXIT_FAILED if corrupt else EXIT_OK
