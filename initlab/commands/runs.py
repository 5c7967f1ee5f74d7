"""``initlab runs``: the runs of a study or sweep folder and their status."""
from __future__ import annotations

from pathlib import Path

from initlab import files
from initlab.document import text_table
from initlab.options import EXIT_OK, UsageError
from initlab.runs import store as st
from initlab.runs.cells import flatten, settings_of, varied_settings
from initlab.runs.study_store import counts_line

NAME = "runs"


def add_parser(sub) -> None:
    r = sub.add_parser(NAME, help="list the runs of a result folder and their status")
    r.add_argument("dir", type=Path, help="the folder an initlab command wrote")
    r.add_argument("--all", action="store_true", help="also runs of earlier plans kept in the store")


# runs.csv columns that identify a run or give its outcome, in the order they are shown
KEY_COLUMNS = ("init", "activation", "target_images", "seed", "test_acc", "diverged",
               "last_over_first", "kept")


def run(args) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    if not st.exists(args.dir):
        return list_folder(args.dir)
    with st.Store(args.dir, readonly=True) as store:     # (a read-only folder is listed too)
        runs = store.runs(plan_only=not args.all)
    counts: dict = {}
    for r in runs:
        if r["position"] is not None:
            counts[st.shown_status(r)] = counts.get(st.shown_status(r), 0) + 1
    varied = varied_settings([r["config"] for r in runs])
    head = ["#", "status", "init", "seed", "test_acc"] + list(varied) + ["attempts", "hash"]
    body = []
    for r in runs:
        acc = (r["row"] or {}).get("test_acc")
        flat = flatten(settings_of(r["config"]))
        body.append(["-" if r["position"] is None else r["position"], st.shown_status(r), r["init"], r["seed"],
                     "" if acc is None else f"{100 * acc:.2f} %"] + [flat.get(k) for k in varied]
                    + [r["attempts"], r["hash"][:12]])
    print(text_table(head, body))
    print(f"\n{counts_line(counts)}")
    if counts.get("stale"):
        print("stale: marked running, but the process that trained them is gone; --resume trains them again")
    for r in runs:
        if r["status"] == "failed" and r["error"]:
            print(f"failed {r['init']} seed {r['seed']}: {r['error']}")
    return EXIT_OK


def list_folder(folder: Path) -> int:
    """The runs of a result folder without a run store (bonus, grid, probe, transfer), from runs.csv."""
    name = files.experiment_of(folder)
    runs = files.read_table(folder, "runs")
    if name is None or not runs:
        raise UsageError(f"{folder} holds no run store ({st.STORE_NAME}) and no runs.csv")
    cols = [c for c in KEY_COLUMNS if c in runs[0]]
    interrupted = any(r.get("interrupted") for r in runs)
    head = ["#", "status"] + cols
    body = [[k, "interrupted" if r.get("interrupted") else "done"]
            + [f"{100 * r[c]:.2f} %" if c == "test_acc" and r[c] is not None else r[c] for c in cols]
            for k, r in enumerate(runs)]
    print(text_table(head, body))
    print(f"\n{len(runs)} runs of a {name} folder" + (" (interrupted)" if interrupted else ""))
    return EXIT_OK
