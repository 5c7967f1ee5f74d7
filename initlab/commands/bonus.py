"""``initlab bonus``: the >= 98.5 %-in-one-epoch recipe once per seed, its verdict and an ablation."""
from __future__ import annotations

from initlab.commands.common import add_study_options, load_data, study_config
from initlab.experiments import bonus
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    prepare_out,
)

NAME = "bonus"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="the bonus: LeNet-5 >= 98.5 %% test accuracy in one epoch on "
                       "every seed", description="Train the bonus recipe once per seed and report "
                       "per-seed test accuracy, min/mean/max and the verdict. Every study flag "
                       "overrides a part of the recipe.", epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, bonus.recipe())
    p.add_argument("--ablation", type=int, default=0, metavar="SEEDS",
                   help="also run the recipe minus each ingredient on a validation split carved "
                        "from the training images, with this many seeds (default 0: skip)")


def run(args) -> int:
    cfg = study_config(args, base=bonus.recipe())
    if args.ablation < 0:
        raise UsageError(f"--ablation must be >= 0, got {args.ablation}")
    out = prepare_out(args.out, NAME, args.force)
    ds = load_data(cfg.dataset, cfg.data_dir, args.quiet)
    rows = bonus.ablation(cfg, ds, args.ablation, progress=not args.quiet) if args.ablation else None
    result = bonus.run_bonus(cfg, ds, progress=not args.quiet)
    path = bonus.write_bonus_report(out, cfg, result, rows)
    for r in result.runs:
        print(f"seed {r['seed']:>3}: {100 * r['test_acc']:.2f} %")
    print(bonus.verdict([r["test_acc"] for r in result.runs]))
    print(f"\nreport: {path}")
    return EXIT_INTERRUPTED if result.interrupted else EXIT_OK
