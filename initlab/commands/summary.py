"""``initlab summary``: a model's layers, output shapes and parameter counts."""
from __future__ import annotations

from initlab import models
from initlab.options import EXIT_OK, UsageError, setting_help

NAME = "summary"


def add_parser(sub) -> None:
    m = sub.add_parser(NAME, help="print a model's layers, shapes and parameter counts")
    m.add_argument("--model", default="lenet5",
                   help=setting_help("model", " (default lenet5)"))
    m.add_argument("--activation", default="relu", help=setting_help("activation", " (default relu)"))


def run(args) -> int:
    try:
        name, options = models.parse_model(args.model)
        model = models.build(name, activation=args.activation, **options)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(models.summary(model))
    return EXIT_OK
