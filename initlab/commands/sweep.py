"""``initlab sweep``: a grid of runs from a TOML file over local worker processes or a Ray cluster."""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from tqdm import tqdm

from initlab.commands.common import check_options
from initlab.commands.study import add_store_flags
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
    STUDY_FLAGS,
    UsageError,
    add_flags,
    prepare_out,
)
from initlab.runs import store as st
from initlab.runs.backends import BACKENDS, ClusterError, connect_ray, run_local, run_ray, use_ray_token
from initlab.runs.cells import cells_of, varied_settings
from initlab.runs.gridfile import read_grid
from initlab.runs.plan import plan_tasks, split_tasks
from initlab.runs.rebuild import rebuild, write_reports
from initlab.runs.study_store import counts_line, new_session, open_out, train_sizes

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
    add_flags(s, STUDY_FLAGS, StudyConfig())
    s.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>-sweep)")
    s.add_argument("--force", action="store_true", help="start over in an --out folder that holds runs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--workers", type=int, default=None,
                   help=f"local worker processes (default: the core count, here {cores()})")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores // workers)")
    s.add_argument("--backend", default="local", help="local (worker processes) | ray "
                   "(pip install 'initlab[ray]')")
    s.add_argument("--address", help="Ray cluster to join, e.g. HEAD:6379 or auto (default: "
                   "$RAY_ADDRESS, else a local Ray instance)")
    s.add_argument("--no-report", action="store_true", help="write the tables only (a big sweep's "
                   "plots take a while); initlab report OUT makes the report later")
    add_store_flags(s)


def run(args) -> int:
    check_options(args)
    if args.backend not in BACKENDS:
        raise UsageError(f"unknown backend {args.backend!r}; choose from: {', '.join(BACKENDS)}")
    if args.backend == "ray":
        if args.address or os.environ.get("RAY_ADDRESS"):
            use_ray_token()            # joining a cluster: before Ray is imported, which reads the mode
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--backend ray needs Ray: pip install 'initlab[ray]'") from None
    elif args.address:
        raise UsageError("--address is for --backend ray")
    workers = args.workers if args.workers is not None else cores()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    threads = args.threads if args.threads is not None else max(1, cores() // workers)
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out DIR, the folder to continue")
    if args.grid is None and not args.resume:
        raise UsageError("give a grid file (initlab sweep GRID.toml), or --resume --out DIR")
    out = args.out or Path("runs") / f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-sweep"
    configs = read_grid(args.grid, args) if args.grid is not None else None   # (errors before any write)
    address = args.address or (os.environ.get("RAY_ADDRESS") if args.backend == "ray" else None)
    if address:
        try:
            connect_ray(address)           # an unreachable or unauthenticated cluster: before any write
        except ClusterError as e:
            raise UsageError(str(e)) from None
    if st.exists(out):
        with st.Store(out) as store:
            if store.meta("plan", {}).get("kind") == "study":
                raise UsageError(f"--out {out} holds a study; resume it with initlab study --resume")
    open_out(out, args.resume, args.force)
    prepare_out(out, "sweep", force=True)      # (only proves the folder is writable here)

    env = {**environment(), "cpu_threads": threads}
    execution = {"backend": args.backend, "workers": workers if args.backend == "local" else None,
                 "threads_per_worker": threads, "address": args.address}
    with st.Store(out) as store:
        if configs is not None:
            first = configs[0]
            options = {"data_dir": first.data_dir, "device": first.device,
                       "seeds_per_stack": first.seeds_per_stack}
            cells = list({c["hash"]: c for cfg in configs for c in cells_of(cfg)}.values())
            store.plan(cells, environment=env, plan={"kind": "sweep", "source": str(args.grid),
                                                     "options": options, "execution": execution})
        else:
            plan = store.meta("plan", {})
            if not plan:
                raise UsageError(f"--out {out} holds no plan yet (stopped while starting): give the "
                                 "grid file too, initlab sweep GRID.toml --out DIR --resume")
            options = plan["options"]
            store.plan([{**r, "config": st.canonical_json(r["config"])} for r in store.runs()],
                       environment=env, plan={**plan, "execution": execution})
        store.requeue_corrupt(out)        # a finished run whose records were damaged trains again
        everything = store.runs()
        varied = varied_settings([r["config"] for r in everything])
        pending = [r for r in everything if r["status"] not in st.FINAL]
        sizes = train_sizes(pending, options, required=args.backend == "local")
        tasks = plan_tasks(pending, options, options.get("seeds_per_stack") or 1, sizes,
                           args.tensorboard, varied)
        if args.backend == "local":
            tasks = split_tasks(tasks, workers)
        summary = _run_tasks(out, store, tasks, args, workers, threads, len(everything))
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
    for error in (summary["errors"] + info["corrupt"])[:5]:
        print(f"initlab: failed: {error}", file=sys.stderr)
    if summary["interrupted"]:
        print(f"interrupted: resume with initlab sweep --resume --out {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["errors"] or info["corrupt"] else EXIT_OK


def _run_tasks(out, store, tasks, args, workers, threads, n_cells) -> dict:
    where = (f"{min(workers, max(1, len(tasks)))} workers x {threads} threads" if args.backend == "local"
             else f"ray ({args.address or 'local'})")
    bar = tqdm(total=sum(t.steps * t.size for t in tasks), unit=" model-steps", unit_scale=True,
               dynamic_ncols=True, disable=args.quiet,
               desc=f"sweep {sum(t.size for t in tasks)}/{n_cells} runs, {len(tasks)} stacks, {where}",
               mininterval=0.2 if sys.stderr.isatty() else 15.0)
    summary = {"errors": [], "interrupted": False, "done": 0}

    def on_done(task, counts, error):
        if error:
            summary["errors"].append(f"{', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: {error}")
        else:
            summary["done"] += task.size
        bar.set_postfix(runs=summary["done"], failed=len(summary["errors"]), refresh=False)

    session = new_session()
    try:
        if not tasks:
            pass
        elif args.backend == "local":
            run_local(out, store, tasks, session, bar.update, on_done, workers, threads, args.tensorboard)
        else:
            run_ray(out, store, tasks, session, bar.update, on_done, threads, args.address,
                    args.tensorboard)
    except KeyboardInterrupt:
        summary["interrupted"] = True
    bar.close()
    return summary
