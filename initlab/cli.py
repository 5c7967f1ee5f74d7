"""``initlab`` command line: the parser over every command's module, and ``main``.

Each command is a module of :mod:`initlab.commands` with ``add_parser(subparsers)`` and
``run(args) -> int``. Every bad input ends as one line on stderr (``initlab: error: ...``) and exit
code 2, before any training starts; a result table that holds an impossible value (a corrupt or edited
file, ``files.CorruptTableError``) is one line and exit code 1.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

from initlab import __version__
from initlab.commands import COMMANDS
from initlab.files import CorruptTableError
from initlab.options import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Parser,
    UsageError,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="initlab",
        description="A laboratory for weight initialization: train networks under different "
                    "initializations and report, from the measurements, what the init changed.",
        epilog=EXIT_CODES_HELP)
    p.add_argument("--version", action="version", version=f"initlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        module.add_parser(sub)
        sub.choices[name].set_defaults(func=module.run)
    p.set_defaults(commands=sub.choices)      # an unknown flag is reported with its command's help
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be: every command handles it as Ctrl-C."""


def _on_sigterm(signum, frame):
    _on_sigterm.received = True
    raise Terminated


_on_sigterm.received = False


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; its exit code (130 after Ctrl-C becomes 143 when SIGTERM was the cause)."""
    code = _main(argv)
    if code == EXIT_INTERRUPTED and _on_sigterm.received:
        return EXIT_TERMINATED
    return code


def _main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            command = getattr(args, "command", None)
            (args.commands[command] if command else parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:          # --help, --version, or a bad argument (already reported)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _on_sigterm.received = False
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"initlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("initlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CorruptTableError as e:   # a result table read back holds an impossible value (exit 1:
        print(f"initlab: error: {e}", file=sys.stderr)   # the input is a damaged file, not a bad flag)
        return EXIT_FAILED
    except OSError as e:             # a disk that filled up or became unwritable while working
        print(f"initlab: failed: {e} (everything written before is complete; --resume continues a "
              f"study or sweep)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
