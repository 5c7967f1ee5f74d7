"""``initlab inits``: every registered initializer with its formula, and where it puts a deep net."""
from __future__ import annotations

from initlab import init
from initlab.activations import ACTIVATIONS
from initlab.init import mean_field, mean_field_inits
from initlab.options import EXIT_OK, UsageError, setting_help

NAME = "inits"
PHASE_TOL = 0.02   # |chi_1 - 1| counted as critical: one draw of 256^2 weights measures sigma_w^2 to ~0.6 %


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="list the registered initializations, their formulas, and (with --activation) "
                       "where each puts a deep net: ordered, critical or chaotic",
                       description="Every registered initializer and its formula. With --activation, also the "
                       "sigma_w^2 = N Var(W) it draws for a square 256 x 256 layer and its mean-field phase "
                       "for that activation with zero biases (Poole et al. 2016; initlab criticality).")
    p.add_argument("--activation", metavar="NAME", help=setting_help("activation", ": place every init in the "
                                                                          "mean-field phase diagram of this one"))


def run(args) -> int:
    act = args.activation
    if act is not None and act not in ACTIVATIONS:
        raise UsageError(f"unknown activation {act!r}; choose from: {', '.join(ACTIVATIONS.names())}")
    for name in init.init_names():
        line = f"{name:18s} {init.describe(name)}"
        if act is not None:
            s = mean_field_inits.measured_sigma_w2(name, act)
            where = ("needs data to draw" if s is None else
                     f"sigma_w^2 {s:.3g}: {mean_field.phase(s, 0.0, act, tol=PHASE_TOL)}" if s > 0 else
                     "sigma_w^2 0: no signal")
            line = f"{name:18s} [{act}: {where}]  {init.describe(name)}"
        print(line)
    return EXIT_OK
