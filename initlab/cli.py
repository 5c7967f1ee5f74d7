"""``initlab`` command line: argument parsing and orchestration only; the work lives in the modules.

Every bad input ends as one line on stderr (``initlab: error: ...``) and exit code 2, before any
training starts.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import sys
import tomllib
from pathlib import Path
from typing import Any, Dict, List, Optional

EXIT_USAGE = 2


class UsageError(Exception):
    """A one-line problem with what the user asked for (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (and exit 2), like every other error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"initlab: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------------
# Study options: one table feeds argparse, the TOML config and the dataclasses
# --------------------------------------------------------------------------------------------------

# (flag, StudyConfig/TrainConfig field, type, help). Types: a callable, or "list" for comma/space lists.
STUDY_FLAGS = [
    ("--inits", "inits", "list", "initializations to compare (names with optional :k=v params), "
     "e.g. 'zeros uniform normal xavier kaiming' or 'kaiming_uniform:mode=fan_out'"),
    ("--seeds", "seeds", int, "number of seeds; each gives every init the same data order (default 3)"),
    ("--first-seed", "first_seed", int, "first seed (default 0)"),
    ("--model", "model", str, "model name (default lenet5)"),
    ("--activation", "activation", str, "activation after each hidden layer (default relu)"),
    ("--pool", "pool", str, "LeNet-5 subsampling: avg (the paper's) or max (default avg)"),
    ("--c3-table", "c3_table", "bool", "use LeNet-5's partial C3 connection table (Table I)"),
    ("--bias-init", "bias_init", float, "constant every bias starts at (default 0)"),
    ("--dataset", "dataset", str, "dataset name (default mnist)"),
    ("--data-dir", "data_dir", str, "folder holding the four IDX files (raw or .gz); "
     "else $INITLAB_DATA_DIR, the cache, then the download sources"),
    ("--device", "device", str, "auto | cpu | cuda (default auto: cuda when available)"),
    ("--seeds-per-stack", "seeds_per_stack", int, "seeds trained together in one batched stack "
     "(default 0 = all; smaller stacks lose less to Ctrl-C and use less memory)"),
    ("--epochs", "train.epochs", int, "passes over the training images (default 1)"),
    ("--lr", "train.lr", float, "learning rate (default 1e-3)"),
    ("--batch-size", "train.batch_size", int, "images per step (default 32)"),
    ("--optimizer", "train.optimizer", str, "adam | adamw | sgd (default adam)"),
    ("--schedule", "train.schedule", str, "constant | onecycle (default constant)"),
    ("--weight-decay", "train.weight_decay", float, "weight decay (default 0)"),
    ("--label-smoothing", "train.label_smoothing", float, "cross-entropy label smoothing (default 0)"),
    ("--normalize", "train.normalize", "bool", "standardize pixels with the dataset's mean/std"),
    ("--train-size", "train.train_size", int, "train on the first N images of a seeded shuffle"),
    ("--record-every", "train.record_every", int, "steps between record points, 4x denser over the first two (default 100)"),
]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_study_flags(p: argparse.ArgumentParser) -> None:
    for flag, dest, typ, help_ in STUDY_FLAGS:
        if typ == "list":
            p.add_argument(flag, dest=dest, nargs="+", default=argparse.SUPPRESS, help=help_,
                           metavar="NAME")
        elif typ == "bool":
            p.add_argument(flag, dest=dest, nargs="?", const=True, type=_bool,
                           default=argparse.SUPPRESS, help=help_, metavar="BOOL")
        else:
            p.add_argument(flag, dest=dest, type=typ, default=argparse.SUPPRESS, help=help_,
                           metavar=flag[2:].upper().replace("-", "_"))
    p.add_argument("--config", type=Path, help="TOML file of the same settings (flag names with _ "
                   "for -); flags given on the command line win")
    p.add_argument("--out", type=Path, help="output folder (default runs/<timestamp>-<command>)")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already "
                   "holds results (they are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _split_list(value) -> List[str]:
    items = value if isinstance(value, list) else [value]
    out: List[str] = []
    for item in items:
        out += [x for x in str(item).replace(",", " ").split() if x] if ":" not in str(item) else [str(item)]
    return out


def read_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read config {path}: {e}") from None


def add_workers_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=0, help="training processes, one thread each "
                   "(default 0 = one per CPU core; 1 on a GPU)")


def study_config(args: argparse.Namespace, base=None):
    """Defaults < --config TOML < flags on the command line -> a validated StudyConfig."""
    from .study import ConfigError, StudyConfig, validate

    cfg = base or StudyConfig()
    values: Dict[str, Any] = {}
    known = {dest.split(".")[-1]: dest for _, dest, _, _ in STUDY_FLAGS}
    if getattr(args, "config", None):
        for key, value in read_toml(args.config).items():
            key = key.replace("-", "_")
            if key not in known:
                raise UsageError(f"unknown setting {key!r} in {args.config}; valid: {', '.join(sorted(known))}")
            values[known[key]] = value
    for _, dest, _, _ in STUDY_FLAGS:
        if dest in vars(args):
            values[dest] = vars(args)[dest]
    if getattr(args, "workers", 0):
        values["workers"] = args.workers
    for dest, value in values.items():
        if dest == "inits":
            value = _split_list(value)
        target = cfg
        *path, leaf = dest.split(".")
        for part in path:
            target = getattr(target, part)
        expected = {f.name: f.type for f in dataclasses.fields(target)}[leaf]
        try:
            value = _coerce(value, expected)
        except (TypeError, ValueError):
            raise UsageError(f"bad value for {leaf}: {value!r}") from None
        setattr(target, leaf, value)
    try:
        validate(cfg)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    return cfg


def _coerce(value, expected: str):
    if "List" in expected or "list" in expected:
        return list(value)
    if "bool" in expected:
        return value if isinstance(value, bool) else _bool(str(value))
    if "int" in expected:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return None if value is None else int(value)
    if "float" in expected:
        return float(value)
    return value if value is None else str(value)


def prepare_out(out: Optional[Path], command: str, force: bool) -> Path:
    """Create the output folder and prove it is writable, refusing to overwrite results."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{stamp}-{command}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / "runs.csv").exists() and not force:
        raise UsageError(f"--out {out} already holds results; choose another folder or pass --force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".initlab-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------

def cmd_study(args) -> int:
    from . import data, report, sweep

    cfg = study_config(args, base=sweep.stored_study_config(args))  # --resume reuses the stored config
    sweep.check_options(args)
    out = prepare_out(args.out, "study", args.force or args.resume)
    try:
        ds = data.load_dataset(cfg.dataset, cfg.data_dir, quiet=args.quiet)
    except data.DataError as e:
        raise UsageError(str(e)) from None
    # train what the run store (OUT/store.sqlite) lacks, then rebuild the tables from it
    result = sweep.run_study_stored(cfg, out, dataset=ds, progress=not args.quiet, resume=args.resume,
                                    force=args.force, tensorboard=args.tensorboard)
    html_path = report.write_report(out, title="initlab study: initialization of "
                                    f"{cfg.model} on {cfg.dataset}")
    files = report.load(out)
    print(report.text_table(*report.summary_table(files)))
    if result.interrupted:
        print("interrupted: the report covers the runs recorded before Ctrl-C", file=sys.stderr)
    print(f"\nreport: {html_path}\n        {out / 'report.md'}")
    return 130 if result.interrupted else 0


def cmd_bonus(args) -> int:
    from . import bonus, data

    cfg = study_config(args, base=bonus.recipe())
    if args.ablation < 0:
        raise UsageError(f"--ablation must be >= 0, got {args.ablation}")
    out = prepare_out(args.out, "bonus", args.force)
    try:
        ds = data.load_dataset(cfg.dataset, cfg.data_dir, quiet=args.quiet)
    except data.DataError as e:
        raise UsageError(str(e)) from None
    rows = bonus.ablation(cfg, ds, args.ablation, progress=not args.quiet) if args.ablation else None
    result = bonus.run_bonus(cfg, ds, progress=not args.quiet)
    path = bonus.write_bonus_report(out, cfg, result, rows)
    for r in result.runs:
        print(f"seed {r['seed']:>3}: {100 * r['test_acc']:.2f} %")
    print(bonus.verdict([r["test_acc"] for r in result.runs]))
    print(f"\nreport: {path}")
    return 130 if result.interrupted else 0


def cmd_report(args) -> int:
    from . import report, store

    if store.exists(args.dir):  # a folder with a run store: rebuild its tables first
        from . import sweep
        return sweep.cmd_report(args)
    if not (args.dir / "runs.csv").exists() or not (args.dir / "config.json").exists():
        raise UsageError(f"{args.dir} holds no study results (runs.csv and config.json)")
    path = report.write_report(args.dir)
    print(report.text_table(*report.summary_table(report.load(args.dir))))
    print(f"\nreport: {path}")
    return 0


def cmd_data(args) -> int:
    from . import data

    try:
        if args.action == "fetch":
            path = data.fetch(args.name, args.data_dir, force=args.force)
            print(f"{args.name}: verified, cached at {path}")
        else:
            info = data.info(args.name)
            for key, value in info.items():
                print(f"{key}: {value}")
    except (data.DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_summary(args) -> int:
    from . import models

    try:
        model = models.build(args.model, activation=args.activation)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(models.summary(model))
    return 0


def cmd_inits(args) -> int:
    from . import init

    for name in init.init_names():
        print(f"{name:18s} {init.describe(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = Parser(
        prog="initlab",
        description="A laboratory for weight initialization: train networks under different "
                    "initializations and report, from the measurements, what the init changed.")
    p.add_argument("--version", action="version", version=f"initlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("study", help="the LAB03-1 study: LeNet-5 on MNIST under several inits, "
                       "several seeds, with a report",
                       description="Train every init x seed (all inits of a seed see the same data "
                       "order), record curves and per-layer statistics, and write a report.")
    add_study_flags(s)
    add_workers_flag(s)
    s.set_defaults(func=cmd_study)

    b = sub.add_parser("bonus", help="the bonus: LeNet-5 >= 98.5 %% test accuracy in one epoch on "
                       "every seed", description="Train the bonus recipe once per seed (default 10) "
                       "and report per-seed test accuracy, min/mean/max and the verdict. Every study "
                       "flag overrides a part of the recipe.")
    add_study_flags(b)
    add_workers_flag(b)
    b.add_argument("--ablation", type=int, default=0, metavar="SEEDS",
                   help="also run the recipe minus each ingredient on a validation split carved "
                        "from the training images, with this many seeds (default 0: skip)")
    b.set_defaults(func=cmd_bonus)

    r = sub.add_parser("report", help="rebuild the report of a study folder",
                       description="Rewrite report.md / report.html and the plots of a study or sweep "
                                   "folder from its tables (e.g. after an upgrade of initlab).")
    r.add_argument("dir", type=Path, help="the folder `initlab study` or `initlab sweep` wrote")
    r.set_defaults(func=cmd_report)

    d = sub.add_parser("data", help="fetch or inspect a dataset")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("name", nargs="?", default="mnist", help="dataset (default mnist)")
    d.add_argument("--data-dir", help="folder holding the four IDX files to verify and cache")
    d.add_argument("--force", action="store_true", help="replace a cache entry that fails verification")
    d.set_defaults(func=cmd_data)

    m = sub.add_parser("summary", help="print a model's layers, shapes and parameter counts")
    m.add_argument("--model", default="lenet5")
    m.add_argument("--activation", default="relu")
    m.set_defaults(func=cmd_summary)

    i = sub.add_parser("inits", help="list the registered initializations and their formulas")
    i.set_defaults(func=cmd_inits)
    from . import grid, sweep, transfer
    grid.add_parsers(sub)        # initlab probe, initlab grid
    transfer.add_parser(sub)     # initlab transfer
    sweep.add_parsers(sub)       # initlab sweep, initlab runs
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:          # --help, --version, or a bad argument (already reported)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as e:
        print(f"initlab: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("initlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
