"""``initlab transfer``: a network pretrained on one dataset as the initialization for another."""
from __future__ import annotations

import sys

from initlab.data import DataError
from initlab.document import text_table
from initlab.experiments import transfer, transfer_report
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Flag,
    UsageError,
    add_config_flag,
    add_flags,
    add_output_flags,
    configure,
    prepare_out,
)

NAME = "transfer"

TRANSFER_FLAGS = [
    Flag("--from", "source", str, "source (pretraining) dataset", "DATASET"),
    Flag("--to", "target", str, "target dataset", "DATASET"),
    Flag("--model", "model", str, "model"),
    Flag("--activation", "activation", str, "activation"),
    Flag("--pretrain-epochs", "pretrain_epochs", int, "epochs of pretraining on the source"),
    Flag("--pretrain-size", "pretrain_size", int, "pretrain on the first N source images of a fixed "
         "shuffle (none: all)", "N"),
    Flag("--from-checkpoint", "from_checkpoint", str, "start every seed from this checkpoint instead "
         "of pretraining", "PATH"),
    Flag("--modes", "modes", "list", "transfer modes (none: --modes '')", "MODE"),
    Flag("--inits", "inits", "list", "scratch inits to compare with (none: --inits '')", "SPEC"),
    Flag("--target-sizes", "target_sizes", "ints", "numbers of target training images (all of the "
         "target's training images at most)", "N"),
    Flag("--min-steps", "min_steps", int, "each target size trains at least this many steps ..."),
    Flag("--target-epochs", "target_epochs", int, "... and at least this many epochs"),
    Flag("--seeds", "seeds", int, "number of seeds"),
    Flag("--first-seed", "first_seed", int, "first seed"),
    Flag("--lr", "train.lr", float, "Adam learning rate, pretraining and target"),
    Flag("--batch-size", "train.batch_size", int, "images per step"),
    Flag("--record-every", "train.record_every", int, "steps between curve points, 4x denser over "
         "the first two"),
    Flag("--device", "device", str, "auto | cpu | cuda"),
]


def add_parser(sub) -> None:
    p = sub.add_parser(
        NAME, help="pretrain on one dataset, use the weights as an initialization on another",
        description="Pretrain on --from (kaiming init), initialize models for --to from the weights "
                    "(finetune / freeze / reinit_head) and compare them with scratch inits at several "
                    "amounts of target data, with a report.", epilog=EXIT_CODES_HELP)
    add_flags(p, TRANSFER_FLAGS, transfer.TransferConfig())
    add_config_flag(p)
    add_output_flags(p, NAME)


def run(args) -> int:
    cfg = configure(args, transfer.TransferConfig(), TRANSFER_FLAGS, transfer.validate)
    if cfg.from_checkpoint:  # a bad checkpoint is found before anything is written or trained
        try:
            _, info = transfer.load_checkpoint(cfg.from_checkpoint, cfg.model, cfg.model_options())
        except ValueError as e:
            raise UsageError(str(e)) from None
        cfg.source = str(info["dataset"])   # the resolved config names the real source
    out = prepare_out(args.out, NAME, args.force)
    try:
        result = transfer.run_transfer(cfg, out=out, progress=not args.quiet)
    except (ValueError, DataError) as e:
        raise UsageError(str(e)) from None
    transfer.write_tables(out, cfg, result)
    if not result.runs:
        print(f"interrupted before any target run finished; tables in {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    path = transfer_report.write_report(out)
    print(text_table(*transfer_report.summary_table(transfer_report.load_tables(out))))
    if result.interrupted:
        print("interrupted: the report covers the runs finished before Ctrl-C", file=sys.stderr)
    print(f"\nreport: {path}\n        {out / 'report.md'}")
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
