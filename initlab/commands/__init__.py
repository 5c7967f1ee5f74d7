"""The commands of the ``initlab`` command line, in ``--help`` order.

A command module has ``NAME``, ``add_parser(subparsers)`` (its flags) and ``run(args) -> int`` (the
exit code: 0 done, 1 some run failed, 2 bad input, 130 interrupted). An experiment declared on the
runner (``initlab.experiments.protocol``) has no module here: its command is made from its catalog
entry (:class:`~initlab.commands.common.ExperimentCommand`). :data:`COMMANDS` is the registry the
parser and the tests are built from.
"""
from initlab.commands import (
                              bonus,
                              data,
                              grid,
                              inits,
                              probe,
                              report,
                              runs,
                              study,
                              summary,
                              sweep,
                              transfer,
)
from initlab.commands.common import ExperimentCommand
from initlab.experiments.catalog import FLAT

COMMANDS = {m.NAME: m for m in (study, bonus, report, data, summary, inits, grid, probe)}
COMMANDS.update({name: ExperimentCommand(name) for name in FLAT})
COMMANDS.update({m.NAME: m for m in (transfer, sweep, runs)})

# commands that train and write a result folder (config.json, meta.json, a table, report.html)
EXPERIMENT_COMMANDS = ("study", "bonus", "grid", "probe", *FLAT, "transfer", "sweep")
