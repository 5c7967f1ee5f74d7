"""Numbers over seeds, for every report: one mean ± std format, one band for curves, one NaN policy.

The NaN policy: a run whose value is missing, NaN or infinite, or whose row says ``diverged``, has no
value. It is left out of every mean, std, min, max and band -- never counted as 0 -- and the text says
how many runs that was: a cell reads '97.50 ± 0.71 (1/3 diverged)', or 'diverged' when no run of it
has a value.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


def count(n: int, word: str) -> str:
    """``count(1, "seed")`` -> '1 seed', ``count(3, "seed")`` -> '3 seeds'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Seeds:
    """One measurement over the seeds of one setting: ``n`` runs with a value, their ``mean``, ``std``
    (n - 1; 0 for one value), ``lo``..``hi``, and the ``diverged`` runs without one. ``values``: the
    values themselves, where known (a table that stored only the statistics gives none)."""
    n: int
    mean: float
    std: float
    lo: float
    hi: float
    diverged: int = 0
    values: Tuple[float, ...] = ()

    @property
    def runs(self) -> int:
        return self.n + self.diverged


def has_value(v, diverged=False) -> bool:
    """The NaN policy's test: ``v`` is a finite number of a run not flagged ``diverged``."""
    return not diverged and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def over_seeds(values: Sequence[Optional[float]], diverged: Optional[Sequence] = None) -> Seeds:
    """:class:`Seeds` from one value per run (None/NaN/inf: the run diverged) and, optionally, each
    run's ``diverged`` flag (a flagged run's value, e.g. the accuracy of its NaN weights, is dropped).

        >>> s = over_seeds([0.9, 0.92, float("nan")])
        >>> (round(s.mean, 3), s.runs, s.diverged)
        (0.91, 3, 1)
    """
    flags = list(diverged) if diverged is not None else [False] * len(values)
    kept = tuple(float(v) for v, d in zip(values, flags) if has_value(v, bool(d)))
    if not kept:
        return Seeds(0, math.nan, math.nan, math.nan, math.nan, len(values))
    return Seeds(len(kept), statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0,
                 min(kept), max(kept), len(values) - len(kept), kept)


def mean_std(seeds, *, scale: float = 100.0, digits: int = 2, unit: str = "",
             nc_below: Optional[float] = None) -> str:
    """The one cell format for a value over seeds (``seeds``: :class:`Seeds` or a list of values):
    ``mean{unit} ± std``, scaled by ``scale`` (100: a fraction as a percentage) to ``digits`` places.
    One value has no spread: '97.00 % (1 seed)'. Runs without a value are counted, not averaged:
    '(1/3 diverged)', and 'diverged' when none has one. With ``nc_below``, a mean under it reads 'n/c'
    (not converged) and a mean above it notes the seeds under it: '(1/3 n/c)'. No run: ''.

        >>> mean_std([0.9, 0.92], scale=1, digits=3)
        '0.910 ± 0.014'
        >>> mean_std([0.97, None], unit=" %")
        '97.00 % (1 seed, 1/2 diverged)'
    """
    s = seeds if isinstance(seeds, Seeds) else over_seeds(seeds)
    if not s.runs:
        return ""
    if not s.n:
        return "diverged"
    notes = []
    if nc_below is not None and s.mean < nc_below:
        text = "n/c"
    else:
        text = f"{scale * s.mean:.{digits}f}{unit}"
        if s.n > 1:
            text += f" ± {scale * s.std:.{digits}f}"
        else:
            notes.append("1 seed")
        below = sum(v < nc_below for v in s.values) if nc_below is not None else 0
        if below:
            notes.append(f"{below}/{s.runs} n/c")
    if s.diverged:
        notes.append(f"{s.diverged}/{s.runs} diverged")
    return text + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Band:
    """A curve over seeds: at each ``x`` the ``mean`` of the runs' values, their ``lo``..``hi`` (min-max)
    and how many runs (``n``) had one there."""
    x: List
    mean: List[float]
    lo: List[float]
    hi: List[float]
    n: List[int]


def band(rows: Iterable[dict], x: str, y: str, geometric: bool = False) -> Band:
    """The one per-x mean and min-max band of column ``y`` over runs (rows of a tidy table), x sorted.
    The NaN policy above: values that are None/NaN/inf, and rows marked ``diverged``, are left out; an
    x with no value left is left out. ``geometric``: the geometric mean, of the values > 0 only (for
    log axes; a 0 cannot be drawn there)."""
    per_x: Dict = defaultdict(list)
    for r in rows:
        v = r.get(y)
        if has_value(v, bool(r.get("diverged"))) and (v > 0 or not geometric):
            per_x[r[x]].append(float(v))
    xs = sorted(per_x)
    centre = (lambda vs: math.exp(statistics.fmean(math.log(v) for v in vs))) if geometric else statistics.fmean
    return Band(xs, [centre(per_x[k]) for k in xs], [min(per_x[k]) for k in xs],
                [max(per_x[k]) for k in xs], [len(per_x[k]) for k in xs])


def bands(rows: Iterable[dict], by: str, x: str, y: str, geometric: bool = False) -> Dict[str, Band]:
    """{value of column ``by``: :func:`band` of its rows}, in first-seen order, empty bands left out."""
    groups: Dict[str, List[dict]] = defaultdict(list)
    for r in rows:
        groups[r[by]].append(r)
    out = {k: band(rs, x, y, geometric) for k, rs in groups.items()}
    return {k: b for k, b in out.items() if b.x}
