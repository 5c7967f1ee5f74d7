"""``initlab transfer``: a network pretrained on one dataset as the initialization for another, on the
runner (the pretraining is a group of cells the target runs start from)."""
from __future__ import annotations

from initlab.commands.common import add_runner_flags, execution_of, finish_stored
from initlab.data import DataError
from initlab.experiments import transfer
from initlab.options import (
    EXIT_CODES_HELP,
    UsageError,
    add_config_flag,
    add_flags,
    add_output_flags,
    configure,
    flags_of,
    prepare_out,
)
from initlab.runs.runner import run_experiment, stored_config

NAME = "transfer"

def add_parser(sub) -> None:
    p = sub.add_parser(
        NAME, help="pretrain on one dataset, use the weights as an initialization on another; resumable",
        description="Pretrain on --from (kaiming init), initialize models for --to from the weights "
                    "(finetune / freeze / reinit_head) and compare them with scratch inits at several "
                    "amounts of target data, with a report. The pretraining runs are cells of the runner "
                    "that the target runs start from: --resume, workers and Ray as in every experiment.",
        epilog=EXIT_CODES_HELP)
    add_flags(p, flags_of(transfer.TransferConfig), transfer.TransferConfig())
    add_config_flag(p)
    add_output_flags(p, NAME)
    add_runner_flags(p)


def run(args) -> int:
    stored = stored_config(args.out, NAME) if args.resume and args.out else None
    base = transfer.from_dict(stored) if stored else transfer.TransferConfig()
    cfg = configure(args, base, flags_of(transfer.TransferConfig), transfer.validate)
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
