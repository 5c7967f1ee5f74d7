"""``initlab sweep``: a grid of runs from a TOML file over local worker processes or a Ray cluster."""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from initlab import files
from initlab.commands.common import add_runner_flags, execution_of
from initlab.document import text_table
from initlab.engine.pool import cores
from initlab.engine.tensorboard import TB_DIR
from initlab.experiments import study_report as report
from initlab.experiments.study import StudyConfig
from initlab.files import environment
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    add_flags,
    flags_of,
    prepare_out,
    read_toml,
)
from initlab.runs import store as st
from initlab.runs.cells import cells_of, varied_settings
from initlab.runs.experiment_sweep import read_experiment_grid, run_sweep
from initlab.runs.gridfile import read_grid
from initlab.runs.rebuild import rebuild, write_reports
from initlab.runs.runner import resume_cells, train
from initlab.runs.study_store import counts_line, open_out

NAME = "sweep"

SWEEP_HELP = """\
Train a grid of runs: every combination of the list-valued settings in a TOML file
(study flag names with _), each with every init and seed. For example:

    inits = ["xavier", "kaiming"]
    seeds = 3
    train_size = 2000
    lr = [0.001, 0.003]          # a list: try each (2 lr x 2 inits x 3 seeds = 12 runs)

or list combinations as [[cell]] tables, each merged over the settings at the top:

    [[cell]]
    init = "kaiming"
    lr = 0.01

A grid may hold another experiment's settings instead (depth, criticality, width), with their
names; a list of lists tries each value of a list setting:

    experiment = "width"
    widths = [[64, 256], [128, 512]]
    base_width = [32, 64]        # 2 x 2 combinations, each a width experiment in OUT/groups/

Every finished run is kept in OUT/store.sqlite with its records under OUT/records/; after a crash
(or Ctrl-C) --resume trains only what is missing. The tables and the report are rebuilt from the
store (one report per combination under OUT/groups/ when more than init and seed varies)."""


def add_parser(sub) -> None:
    s = sub.add_parser(NAME, help="a grid of runs from a TOML file, by local worker processes or "
                       "on a Ray cluster; resumable", description=SWEEP_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Any study flag overrides the grid file (one value for every cell).\n"
                       + EXIT_CODES_HELP)
    s.add_argument("grid", nargs="?", type=Path, help="TOML grid (optional with --resume: the stored "
                   "plan is used)")
    add_flags(s, flags_of(StudyConfig), StudyConfig())
    s.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>-sweep)")
    s.add_argument("--force", action="store_true", help="start over in an --out folder that holds runs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-report", action="store_true", help="write the tables only (a big sweep's "
                   "plots take a while); initlab report OUT makes the report later")
    add_runner_flags(s)


def run(args) -> int:
    execution = execution_of(args)
    if args.grid is None and not args.resume:
        raise UsageError("give a grid file (initlab sweep GRID.toml), or --resume --out DIR")
    out = args.out or Path("runs") / f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep"
    doc = read_toml(args.grid) if args.grid is not None else {}
    if doc.get("experiment", "study") != "study":
        return _run_experiment_sweep(args, doc, out, execution)
    swept = files.read_json(out / "config.json").get("experiment") if args.grid is None else None
    if swept not in (None, "study"):
        raise UsageError(f"--out {out} holds a sweep of {swept}: give its grid file too, initlab sweep "
                         f"GRID.toml --out {out} --resume")
    configs = read_grid(args.grid, args, doc) if args.grid is not None else None   # (errors before any write)
    workers = execution.workers or cores()
    threads = execution.threads or max(1, cores() // workers)
    if st.exists(out):
        with st.Store(out, readonly=True) as store:
            kind = store.meta("plan", {}).get("kind")
            if kind not in (None, "sweep"):
                raise UsageError(f"--out {out} holds a {kind}; resume it with initlab {kind} --resume")
    open_out(out, args.resume, args.force)
    prepare_out(out, "sweep", force=True)      # (only proves the folder is writable here)

    env = {**environment(), "cpu_threads": threads}
    stored_execution = {"backend": execution.backend, "threads_per_worker": threads,
                        "workers": workers if execution.backend == "local" else None,
                        "address": execution.address}
    with st.Store(out) as store:
        if configs is not None:
            first = configs[0]
            options = {"data_dir": first.data_dir, "device": first.device,
                       "seeds_per_stack": first.seeds_per_stack}
            cells = list({c["hash"]: c for cfg in configs for c in cells_of(cfg)}.values())
            if args.resume:
                cells = resume_cells(store, cells, None, {}, execution.extend, "sweep")
            store.plan(cells, environment=env, plan={"kind": "sweep", "source": str(args.grid),
                                                     "options": options, "execution": stored_execution})
        else:
            plan = store.meta("plan", {})
            if not plan:
                raise UsageError(f"--out {out} holds no plan yet (stopped while starting): give the "
                                 "grid file too, initlab sweep GRID.toml --out DIR --resume")
            options = plan["options"]
            store.plan([{**r, "config": st.canonical_json(r["config"])} for r in store.runs()],
                       environment=env, plan={**plan, "execution": stored_execution})
        store.requeue_corrupt(out)        # a finished run whose records were damaged trains again
        everything = store.runs()
        varied = varied_settings([r["config"] for r in everything])
        pending = [r for r in everything if r["status"] not in st.FINAL]
        summary = train(out, store, pending, options, execution, f"sweep of {len(everything)} runs",
                        per_stack=options.get("seeds_per_stack") or 1, workers=workers, varied=varied)
    info = rebuild(out)
    if info["finished"]:
        print(text_table(*report.summary_table(report.load(out))))
        if args.no_report:
            print(f"\ntables: {out}/runs.csv ...; the report: initlab report {out}")
        else:
            print(f"\nreport: {write_reports(out, info, title=f'initlab sweep: {out.name}')}")
    print(f"runs: {counts_line(info['counts'])}  (initlab runs {out})")
    if args.tensorboard:
        print(f"tensorboard: tensorboard --logdir {out / TB_DIR}")
    for error in info["corrupt"][:5]:
        print(f"initlab: failed: {error}", file=sys.stderr)
    if summary.interrupted:
        print(f"interrupted: resume with initlab sweep --resume --out {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed or info["corrupt"] else EXIT_OK


def _run_experiment_sweep(args, doc: dict, out: Path, execution) -> int:
    """A grid of another experiment's settings (``experiment = "width"``): its combinations one after
    the other, each its own result folder under OUT/groups/ (``initlab.runs.experiment_sweep``)."""
    given = [f.flag for f in flags_of(StudyConfig) if f.dest in vars(args)]
    if given:
        raise UsageError(f"{given[0]} is a study setting; a sweep of {doc['experiment']} takes its settings "
                         f"from the grid file")
    name, combos = read_experiment_grid(args.grid, dict(doc))
    if (out / "runs.csv").exists() and not (args.resume or args.force):
        raise UsageError(f"--out {out} already holds results; pass --resume to continue them or --force "
                         f"to start over")
    prepare_out(out, "sweep", force=True)      # (only proves the folder is writable here)
    outcome = run_sweep(name, combos, out, execution, args.resume, args.force)
    print(f"report: {out / 'report.html'}")
    for line in outcome.failed[:5]:
        print(f"initlab: failed: {line}", file=sys.stderr)
    if outcome.interrupted:
        print(f"interrupted: resume with initlab sweep {args.grid} --resume --out {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.failed else EXIT_OK
