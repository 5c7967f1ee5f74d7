"""The commands of the ``initlab`` command line, one module each, in ``--help`` order.

A command module has ``NAME``, ``add_parser(subparsers)`` (its flags) and ``run(args) -> int`` (the
exit code: 0 done, 1 some run failed, 2 bad input, 130 interrupted); :data:`COMMANDS` is the
registry the parser and the tests are built from.
"""
from initlab.commands import (
                              bonus,
                              criticality,
                              data,
                              depth,
                              grid,
                              inits,
                              probe,
                              report,
                              runs,
                              study,
                              summary,
                              sweep,
                              transfer,
                              width,
)

COMMANDS = {m.NAME: m for m in (study, bonus, report, data, summary, inits, grid, probe, depth,
                                criticality, width, transfer, sweep, runs)}

# commands that train and write a result folder (config.json, meta.json, a table, report.html)
EXPERIMENT_COMMANDS = ("study", "bonus", "grid", "probe", "depth", "criticality", "width", "transfer", "sweep")
