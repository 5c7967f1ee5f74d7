"""``initlab report DIR``: rebuild the report of a result folder from its files."""
from __future__ import annotations

from pathlib import Path

from initlab.experiments import study_report
from initlab.options import EXIT_OK, UsageError
from initlab.runs import store as st
from initlab.runs.rebuild import rebuild, write_reports
from initlab.runs.study_store import counts_line

NAME = "report"


def add_parser(sub) -> None:
    r = sub.add_parser(NAME, help="rebuild the report of a study folder",
                       description="Rewrite report.md / report.html and the plots of a study or sweep "
                                   "folder from its tables (e.g. after an upgrade of initlab).")
    r.add_argument("dir", type=Path, help="the folder `initlab study` or `initlab sweep` wrote")


def run(args) -> int:
    if st.exists(args.dir):   # a folder with a run store: rebuild its tables first
        info = rebuild(args.dir)
        if not info["finished"]:
            raise UsageError(f"{args.dir} holds no finished runs yet ({counts_line(info['counts'])})")
        path = write_reports(args.dir, info, title="initlab study" if info["kind"] == "study"
                                   else f"initlab sweep: {Path(args.dir).name}")
    else:
        if not (args.dir / "runs.csv").exists() or not (args.dir / "config.json").exists():
            raise UsageError(f"{args.dir} holds no study results (runs.csv and config.json)")
        path = study_report.write_report(args.dir)
    print(study_report.text_table(*study_report.summary_table(study_report.load(args.dir))))
    print(f"\nreport: {path}")
    return EXIT_OK
