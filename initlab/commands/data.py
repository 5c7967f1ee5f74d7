"""``initlab data fetch|info``: fetch and verify a dataset into the cache, or show what is cached."""
from __future__ import annotations

from initlab import data
from initlab.options import EXIT_OK, UsageError, setting_help

NAME = "data"


def add_parser(sub) -> None:
    d = sub.add_parser(NAME, help="fetch or inspect a dataset")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("name", nargs="?", help="dataset (fetch: default mnist; info: default every dataset)")
    d.add_argument("--data-dir", help=setting_help("data_dir", ": verified and cached"))
    d.add_argument("--force", action="store_true", help="replace a cache entry that fails verification")


def run(args) -> int:
    try:
        if args.action == "fetch":
            name = args.name or "mnist"
            path = data.fetch(name, args.data_dir, force=args.force)
            print(f"{name}: verified, cached at {path}")
        else:
            for k, name in enumerate([args.name] if args.name else data.dataset_names()):
                print("" if k else "", end="\n" if k else "")
                for key, value in data.info(name).items():
                    print(f"{key}: {value}")
    except (data.DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    return EXIT_OK
