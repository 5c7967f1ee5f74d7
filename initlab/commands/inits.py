"""``initlab inits``: every registered initializer with its formula."""
from __future__ import annotations

from initlab import init
from initlab.options import EXIT_OK

NAME = "inits"


def add_parser(sub) -> None:
    sub.add_parser(NAME, help="list the registered initializations and their formulas")


def run(args) -> int:
    for name in init.init_names():
        print(f"{name:18s} {init.describe(name)}")
    return EXIT_OK
