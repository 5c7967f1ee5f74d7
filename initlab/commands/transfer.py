"""``initlab transfer``: a network pretrained on one dataset as the initialization for another, on the
runner (the pretraining is a group of cells the target runs start from)."""
from __future__ import annotations

from initlab.commands.common import add_runner_flags, execution_of, finish_stored
from initlab.data import DataError
from initlab.experiments import transfer
from initlab.options import (
    EXIT_CODES_HELP,
    Flag,
    UsageError,
    add_config_flag,
    add_flags,
    add_output_flags,
    configure,
    prepare_out,
)
from initlab.runs.runner import run_experiment, stored_config

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
        NAME, help="pretrain on one dataset, use the weights as an initialization on another; resumable",
        description="Pretrain on --from (kaiming init), initialize models for --to from the weights "
                    "(finetune / freeze / reinit_head) and compare them with scratch inits at several "
                    "amounts of target data, with a report. The pretraining runs are cells of the runner "
                    "that the target runs start from: --resume, workers and Ray as in every experiment.",
        epilog=EXIT_CODES_HELP)
    add_flags(p, TRANSFER_FLAGS, transfer.TransferConfig())
    add_config_flag(p)
    add_output_flags(p, NAME)
    add_runner_flags(p)


def run(args) -> int:
    stored = stored_config(args.out, NAME) if args.resume and args.out else None
    base = transfer.from_dict(stored) if stored else transfer.TransferConfig()
    cfg = configure(args, base, TRANSFER_FLAGS, transfer.validate)
    if cfg.from_checkpoint:  # a bad checkpoint is found before anything is written or trained
        try:
            _, info = transfer.load_checkpoint(cfg.from_checkpoint, cfg.model, cfg.model_options())
        except ValueError as e:
            raise UsageError(str(e)) from None
        cfg.source = str(info["dataset"])   # the resolved config names the real source
    execution = execution_of(args)
    out = prepare_out(args.out, NAME, args.force or args.resume)
    try:
        outcome = run_experiment(NAME, cfg, out, execution, resume=args.resume, force=args.force)
    except DataError as e:
        raise UsageError(str(e)) from None
    return finish_stored(NAME, out, outcome)
