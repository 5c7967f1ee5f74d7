"""``initlab data fetch|info``: fetch and verify a dataset into the cache, or show what is cached."""
from __future__ import annotations

from initlab import data
from initlab.options import EXIT_OK, UsageError

NAME = "data"


def add_parser(sub) -> None:
    d = sub.add_parser(NAME, help="fetch or inspect a dataset")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("name", nargs="?", default="mnist", help="dataset (default mnist)")
    d.add_argument("--data-dir", help="folder holding the four IDX files to verify and cache")
    d.add_argument("--force", action="store_true", help="replace a cache entry that fails verification")


def run(args) -> int:
    try:
        if args.action == "fetch":
            path = data.fetch(args.name, args.data_dir, force=args.force)
            print(f"{args.name}: verified, cached at {path}")
        else:
            for key, value in data.info(args.name).items():
                print(f"{key}: {value}")
    except (data.DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    return EXIT_OK
