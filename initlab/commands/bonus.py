"""``initlab bonus``: the >= 98.5 %-in-one-epoch recipe once per seed, its verdict and an ablation."""
from __future__ import annotations

from initlab import files
from initlab.commands.common import add_study_options, execution_of, finish_stored, load_data, study_config
from initlab.experiments import bonus
from initlab.options import EXIT_CODES_HELP, UsageError, prepare_out
from initlab.runs import runner

NAME = "bonus"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="the bonus: LeNet-5 >= 98.5 %% test accuracy in one epoch on "
                       "every seed; resumable", description="Train the bonus recipe once per seed and "
                       "report per-seed test accuracy, min/mean/max and the verdict. Every study flag "
                       "overrides a part of the recipe.", epilog=EXIT_CODES_HELP)
    add_study_options(p, NAME, bonus.recipe())
    p.add_argument("--ablation", type=int, default=None, metavar="SEEDS",
                   help="also run the recipe minus each ingredient on a validation split carved "
                        "from the training images, with this many seeds (default 0: skip)")


def run(args) -> int:
    stored = runner.stored_config(args.out, NAME) if args.resume and args.out else None
    base = bonus.from_dict(stored) if stored else bonus.BonusConfig()
    cfg = bonus.BonusConfig(study_config(args, base=base.study),
                            args.ablation if args.ablation is not None else base.ablation)
    try:
        bonus.validate(cfg)
    except ValueError as e:
        raise UsageError(str(e)) from None
    execution = execution_of(args, workers=cfg.study.workers)   # (--resume: the stored count unless given)
    out = prepare_out(args.out, NAME, args.force or args.resume)
    ds = load_data(cfg.study.dataset, cfg.study.data_dir, args.quiet)
    outcome = runner.run_experiment(NAME, cfg, out, execution, resume=args.resume, force=args.force,
                                    dataset=ds)
    runs = files.read_table(out, "runs")
    if runs:
        print(bonus.verdict([r["test_acc"] for r in runs]) + "\n")
    return finish_stored(NAME, out, outcome)
