"""``initlab depth``: plain deep nets at several depths, inits and learning rates (He et al. 2015)."""
from __future__ import annotations

import sys

from initlab.commands.common import load_data
from initlab.document import text_table
from initlab.experiments import depth, depth_report
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Flag,
    add_config_flag,
    add_flags,
    add_output_flags,
    add_workers_flag,
    configure,
    prepare_out,
)

NAME = "depth"

DEPTH_FLAGS = [
    Flag("--depths", "depths", "ints", "hidden layers of each net", "N"),
    Flag("--inits", "inits", "list", "initializations"),
    Flag("--lrs", "lrs", "floats", "learning rates (one study per depth and lr)", "LR"),
    Flag("--seeds", "seeds", int, "seeds per depth x lr x init"),
    Flag("--first-seed", "first_seed", int, "first seed"),
    Flag("--model", "model", str, "the plain net with settings, e.g. mlp:width=128,conv=true (--depths sets "
         "its depth)", "SPEC"),
    Flag("--width", "width", int, "units per hidden layer (channels with --conv)", "N"),
    Flag("--conv", "conv", "bool", "3x3 convolutions with padding 1 instead of fully connected layers"),
    Flag("--activation", "activation", str, "activation after each hidden layer"),
    Flag("--optimizer", "optimizer", str, "sgd (Nesterov momentum 0.9) | adam | adamw"),
    Flag("--batch-size", "batch_size", int, "images per step"),
    Flag("--epochs", "epochs", int, "passes over the training images"),
    Flag("--train-size", "train_size", int, "train on the first N images of a seeded shuffle (none: all)", "N"),
    Flag("--bias-init", "bias_init", float, "constant every bias starts at"),
    Flag("--dataset", "dataset", str, "dataset name"),
    Flag("--data-dir", "data_dir", str, "folder holding the dataset's files"),
    Flag("--device", "device", str, "auto | cpu | cuda"),
]


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="deep plain nets: accuracy against depth per init and learning rate, "
                       "and the signal at initialization (He et al. 2015, Fig. 3)",
                       description="Train a plain net (no normalization, no skip connections) at every "
                       "depth x lr x init x seed for one epoch, probe the deepest net's signal at "
                       "initialization, and report how deep each init still trains.",
                       epilog=EXIT_CODES_HELP)
    add_flags(p, DEPTH_FLAGS, depth.DepthConfig())
    add_config_flag(p)
    add_output_flags(p, NAME)
    add_workers_flag(p)


def run(args) -> int:
    extra = {"workers": args.workers} if args.workers else None
    cfg = depth.resolve(configure(args, depth.DepthConfig(), DEPTH_FLAGS, depth.validate, extra=extra))
    out = prepare_out(args.out, NAME, args.force)
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    result = depth.run_depth(cfg, dataset=ds, progress=not args.quiet)
    depth.write_depth(out, cfg, result)
    path = depth_report.write_report(out)
    for table in depth_report.summary_tables(out):
        print(text_table(*table) + "\n")
    for sentence in depth_report.observations(result.runs, result.probe, depth.asdict(cfg)):
        print("- " + sentence)
    if result.interrupted:
        print("interrupted: the report covers the runs finished before Ctrl-C", file=sys.stderr)
    print(f"\nreport: {path}\n        {out / 'report.md'}")
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
