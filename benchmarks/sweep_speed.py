"""How much faster a sweep runs with more local worker processes, end to end.

    python benchmarks/sweep_speed.py                  # 30 runs (5 inits x 6 seeds, 20,000 images each)
    python benchmarks/sweep_speed.py --repeats 3      # more repetitions: mean ± std of each layout
    python benchmarks/sweep_speed.py --quick          # 10 runs of 300 images, a smoke test

Each measurement is one ``initlab sweep`` command in a fresh process, timed from start to exit
(interpreter and torch start-up, spawning the workers, training, writing records and tables; the
plotted report is left out with --no-report, since it is the same serial work for every layout).
Layouts are run interleaved (A B C, A B C, ...) so that load from other users of a shared machine
falls on all of them alike; the load average is printed with every measurement. Printed: seconds
per sweep for each layout (mean ± std, min over repeats), the speed-up of each over one worker, and
a check that every layout produced the same test accuracies.

Layouts: "1 worker x T threads" is what --workers 1 does by default (T = the core count);
"1 worker x 1 thread" shows how much of that is intra-op threading; "W workers x 1 thread" are the
pool. A stack is one seed's inits (seeds_per_stack = 1), so 6 seeds give 6 units of work.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INITS = ("zeros", "uniform", "normal", "xavier", "kaiming")


def grid_text(seeds: int, train_size: int) -> str:
    return (f"inits = {list(INITS)!r}\nseeds = {seeds}\ntrain_size = {train_size}\n"
            f"seeds_per_stack = 1\n").replace("'", '"')


def run_once(grid: Path, out: Path, workers: int, threads: int) -> tuple:
    """Seconds for one sweep, and {(init, seed): test_acc}."""
    cmd = [sys.executable, "-m", "initlab.cli", "sweep", str(grid), "--out", str(out), "--workers",
           str(workers), "--threads", str(threads), "--quiet", "--no-report"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"sweep failed ({done.returncode}):\n{done.stderr}")
    with open(out / "runs.csv", newline="") as f:
        acc = {(r["init"], int(r["seed"])): float(r["test_acc"]) for r in csv.DictReader(f)}
    return seconds, acc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=6, help="seeds (x 5 inits = runs; default 6 -> 30)")
    p.add_argument("--train-size", type=int, default=20000,
                   help="training images per run (default 20000)")
    p.add_argument("--repeats", type=int, default=2, help="measurements of each layout")
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="pool sizes to compare with one worker (default: 2 and the core count)")
    p.add_argument("--quick", action="store_true", help="10 runs of 300 images, one repeat")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.train_size, args.repeats = 2, 300, 1

    import torch

    from initlab.engine.pool import cores

    n = cores()
    pools = sorted(set(args.workers or [2, n]) - {1})
    layouts = [(1, n)] + ([(1, 1)] if n > 1 else []) + [(w, max(1, n // w)) for w in pools]
    runs = args.seeds * len(INITS)
    print(f"sweep of {runs} runs ({len(INITS)} inits x {args.seeds} seeds, {args.train_size:,} images, "
          f"1 epoch, batch 32); {n} cores; torch {torch.__version__}; {args.repeats} repeats")
    times = {layout: [] for layout in layouts}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        grid = Path(tmp) / "grid.toml"
        grid.write_text(grid_text(args.seeds, args.train_size))
        for rep in range(args.repeats):
            for workers, threads in layouts:
                out = Path(tmp) / f"w{workers}t{threads}r{rep}"
                load = os.getloadavg()[0]
                seconds, acc = run_once(grid, out, workers, threads)
                times[(workers, threads)].append(seconds)
                results.setdefault((workers, threads), acc)
                print(f"  repeat {rep + 1}: {workers} worker(s) x {threads} thread(s): {seconds:6.1f} s "
                      f"(load average before: {load:.2f})", flush=True)
    base = statistics.fmean(times[(1, n)])
    print(f"\n{'layout':<26}{'s / sweep':>18}{'min':>8}{'runs / s':>10}{'speed-up':>10}{'(vs 1x1)':>10}")
    for (workers, threads), ts in times.items():
        mean = statistics.fmean(ts)
        std = statistics.stdev(ts) if len(ts) > 1 else 0.0
        one = statistics.fmean(times.get((1, 1), ts))
        print(f"{f'{workers} worker(s) x {threads} thread(s)':<26}{mean:>10.1f} ± {std:<5.1f}"
              f"{min(ts):>8.1f}{runs / mean:>10.2f}{base / mean:>9.2f}x{one / mean:>9.2f}x")
    ref = results[(1, 1) if (1, 1) in results else (1, n)]
    same = {layout: max(abs(acc[k] - ref[k]) for k in ref) for layout, acc in results.items()}
    print("\nlargest test-accuracy difference from 1 worker x 1 thread, per layout: "
          + ", ".join(f"{w}x{t}: {d:.4f}" for (w, t), d in same.items()))


if __name__ == "__main__":
    main()
