"""``initlab probe``: signal propagation at initialization in a deep plain net, next to the formula."""
from __future__ import annotations

import sys
import time

from initlab.commands.common import load_data
from initlab.document import text_table
from initlab.experiments import probe, probe_report
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_config_flag,
    add_flags,
    add_output_flags,
    configure,
    flags_of,
    prepare_out,
)

NAME = "probe"

def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="signal propagation at initialization: per-layer std of "
                       "activations and gradients in a deep plain net, next to the variance formula",
                       description="Forward and backward one batch of real images through a deep plain "
                       "net (no training) for every init x activation x seed; write probe.csv, probe.png "
                       "and a report saying which inits keep the signal within a factor of 2.",
                       epilog=EXIT_CODES_HELP)
    add_flags(p, flags_of(probe.ProbeConfig), probe.ProbeConfig())
    add_config_flag(p)
    add_output_flags(p, NAME)


def run(args) -> int:
    cfg = configure(args, probe.ProbeConfig(), flags_of(probe.ProbeConfig), probe.validate)
    out = prepare_out(args.out, NAME, args.force, table="probe.csv")
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    t0 = time.perf_counter()
    interrupted = None
    try:
        rows = probe.run_probe(cfg, dataset=ds, progress=not args.quiet)
    except probe.Interrupted as e:              # keep what was probed
        interrupted, rows = e, e.rows
        if not rows:
            print(f"initlab: interrupted before the first combination was probed; nothing written in {out}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    path = probe.write_probe(out, cfg, rows, time.perf_counter() - t0, interrupted)
    print(text_table(*probe_report.ratio_table(rows, cfg.inits, cfg.activations)))
    print()
    for s in probe_report.observations(rows, cfg.inits, cfg.activations) + \
            probe_report.phases(rows, cfg.inits, cfg.activations):
        print("- " + s)
    print(f"\nreport: {path}\n        {out / 'report.md'}")
    if interrupted is not None:
        print(f"interrupted: {len({(r['init'], r['activation'], r['seed']) for r in rows})} of "
              f"{interrupted.combinations} combinations probed; the report covers them", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK
