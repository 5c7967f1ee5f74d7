"""``initlab runs``: the runs of a study or sweep folder and their status."""
from __future__ import annotations

from pathlib import Path

from initlab.experiments.study_report import text_table
from initlab.options import EXIT_OK, UsageError
from initlab.runs import store as st
from initlab.runs.cells import flatten, settings_of, varied_settings
from initlab.runs.study_store import counts_line

NAME = "runs"


def add_parser(sub) -> None:
    r = sub.add_parser(NAME, help="list the runs of a study or sweep folder and their status")
    r.add_argument("dir", type=Path, help="the folder `initlab study` or `initlab sweep` wrote")
    r.add_argument("--all", action="store_true", help="also runs of earlier plans kept in the store")


def run(args) -> int:
    if not st.exists(args.dir):
        raise UsageError(f"{args.dir} holds no run store ({st.STORE_NAME})")
    with st.Store(args.dir) as store:
        runs = store.runs(plan_only=not args.all)
        counts = store.counts()
    varied = varied_settings([r["config"] for r in runs])
    head = ["#", "status", "init", "seed", "test_acc"] + list(varied) + ["attempts", "hash"]
    body = []
    for r in runs:
        acc = (r["row"] or {}).get("test_acc")
        flat = flatten(settings_of(r["config"]))
        body.append(["-" if r["position"] is None else r["position"], r["status"], r["init"], r["seed"],
                     "" if acc is None else f"{100 * acc:.2f} %"] + [flat.get(k) for k in varied]
                    + [r["attempts"], r["hash"][:12]])
    print(text_table(head, body))
    print(f"\n{counts_line(counts)}")
    for r in runs:
        if r["status"] == "failed" and r["error"]:
            print(f"failed {r['init']} seed {r['seed']}: {r['error']}")
    return EXIT_OK
