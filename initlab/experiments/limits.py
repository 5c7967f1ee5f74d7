"""What one command may plan: seeds that the run store and torch can hold, and at most a million runs."""
from __future__ import annotations

from initlab.options import UsageError, flag

SEED_MAX = 2**63 - 1    # a seed is an INTEGER of the run store (SQLite: signed 64-bit) and seeds
                        # torch.Generator.manual_seed (which takes up to 2**64 - 1: the offsets the
                        # generators add, 10,000 for an init draw and 20,000 for transfer's pretraining,
                        # still fit); seeds start at 0
MAX_RUNS = 1_000_000    # runs one command may plan (seeds x inits x ...): each run is a model in memory
                        # while its stack trains, a row of the run store and of runs.csv, and its records
                        # on disk; at ~3.4 s per LeNet-5 epoch on one core (1.8 ms a step, 1,875 steps)
                        # a million runs is ~40 core-days -- a larger number is a typo, not a plan


def check_seeds(seeds: int, first_seed: int, per_seed: int = 1, what: str = "",
                setting: str = "seeds", other_runs: int = 0, other_what: str = "other runs") -> None:
    """Raise UsageError (one line) unless the seeds ``first_seed .. first_seed + seeds - 1`` lie in
    [0, SEED_MAX] and the runs they make -- ``seeds`` x ``per_seed`` (``what``: "5 inits") plus
    ``other_runs`` (``other_what``) -- are at most MAX_RUNS. ``setting`` names the count (``ablation``
    for bonus's).

    Example:
        >>> check_seeds(10**12, 0, 5, "5 inits")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        initlab.options.UsageError: --seeds 1000000000000: more runs than one command may plan (1,000,...)
    """
    runs = max(seeds, 0) * per_seed + other_runs
    if runs > MAX_RUNS:
        count = f"{seeds:,} seeds" + (f" x {what}" if what else "") + \
            (f" + {other_runs:,} {other_what}" if other_runs else "")
        raise UsageError(f"{flag(setting, seeds)}: more runs than one command may plan ({count} = "
                         f"{runs:,} runs; at most {MAX_RUNS:,})")
    if first_seed < 0:
        raise UsageError(f"{flag('first_seed')} must be >= 0, got {first_seed}")
    if first_seed > SEED_MAX:
        raise UsageError(f"{flag('first_seed', first_seed)}: a seed must be at most 2**63 - 1 = {SEED_MAX} "
                         f"(a SQLite INTEGER, torch's manual_seed)")
    if first_seed + seeds - 1 > SEED_MAX:
        raise UsageError(f"{flag(setting, seeds)} from {flag('first_seed', first_seed)}: the last seed "
                         f"{first_seed + seeds - 1} is past 2**63 - 1 = {SEED_MAX} (a SQLite INTEGER, "
                         f"torch's manual_seed)")
