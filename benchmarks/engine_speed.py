"""initlab against the textbook LAB03-1 loop: whole processes, timed from start to exit (`make bench`).

    python benchmarks/engine_speed.py                   # (a), (b), (c), median of 3 (~25 min on the lab VM)
    python benchmarks/engine_speed.py --repeats 1       # one round, a smoke test
    python benchmarks/engine_speed.py --against DIR     # also time the initlab of another checkout (before/after)
    python benchmarks/engine_speed.py --layouts         # also the default study in one process: accuracies
    python benchmarks/engine_speed.py --profile         # one LeNet-5 step: where its time goes
    python benchmarks/engine_speed.py --detail          # the in-process comparison: recording, scaling
    python benchmarks/engine_speed.py --pool-start      # starting the worker pool: forked and spawned
    python benchmarks/engine_speed.py --roofline        # the least time 50 models could take here
    python benchmarks/engine_speed.py --phases a        # where one case's time goes, in its process
    python benchmarks/engine_speed.py --kernel-against DIR   # the LeNet kernel against DIR's, one process

The yardstick is ``benchmarks/textbook.py``: one LeNet-5 as students write it (an ``nn.Module``, a
``DataLoader`` over MNIST, batch 32, Adam 1e-3, one epoch, torch's default threads, then the test
set), as a command of its own. Against it, three ``initlab study`` commands, each a fresh process:

    (a) initlab study --inits kaiming --seeds 1 --quiet      one model
    (b) initlab study --quiet                                the default study: 5 inits x 3 seeds
    (c) initlab study --seeds 10 --quiet                     50 models

Every process's wall clock counts: interpreter and torch start-up, data, training, recording, the
final test evaluation, the run store, the tables and the plotted report. A study of n models is set
against n textbook processes (n times the textbook median). The commands run interleaved, round after
round (textbook, a, b, c, textbook, a, ...), so that load from other users of the machine falls on all
alike; the table gives the median of the rounds and their range, with the load average seen. Test
accuracies are printed for the same seeds: the textbook loop's against (a)'s, and with ``--against``
the two checkouts' run for run (identical on the single-thread worker path).
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INITS = ("zeros", "uniform", "normal", "xavier", "kaiming")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def textbook(seed: int, init_name: str, n_images: int, device: str) -> dict:
    """The textbook loop of ``benchmarks/textbook.py`` in this process: training seconds and accuracy."""
    sys.path.insert(0, str(HERE))
    from textbook import train

    seconds, acc = train(init_name, seed, n_images, device)
    return {"seconds": seconds, "models": 1, "acc": {(init_name, seed): acc}}


# --------------------------------------------------------------------------------------------------
# Whole processes
# --------------------------------------------------------------------------------------------------

CASES = {   # name: (models, initlab study arguments)
    "a": (1, ["--inits", "kaiming", "--seeds", "1"]),
    "b": (15, []),
    "c": (50, ["--seeds", "10"]),
}
LABELS = {"a": "(a) one model: study --inits kaiming --seeds 1",
          "b": "(b) the default study: 5 inits x 3 seeds",
          "c": "(c) study --seeds 10: 50 models"}


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's finished children and their children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, cwd: Path, env: dict) -> tuple:
    """(seconds from start to exit, 1-minute load average when it started, stdout, CPU seconds of
    the command and every process it started: the work done, which a busy machine stretches less
    than the wall clock)."""
    load = os.getloadavg()[0]
    c0, t0 = cpu_seconds(), time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, load, done.stdout, cpu


def env_for(checkout: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_accuracies(out: Path) -> dict:
    with open(out / "runs.csv", newline="") as f:
        return {(r["init"], int(r["seed"])): float(r["test_acc"]) for r in csv.DictReader(f)}


def spread(values) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def welch(a, b) -> str:
    if len(a) < 2 or len(b) < 2:
        return ""
    se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    d = statistics.fmean(b) - statistics.fmean(a)
    return f"{d / se:+.2f}" if se else ("0" if d == 0 else "inf")


def whole(args) -> int:
    import torch

    checkouts = {"initlab": ROOT}
    if args.against:
        checkouts["against"] = Path(args.against).resolve()
    cases = [c for c in args.cases]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {args.repeats} round(s), cases "
          f"{', '.join(cases)}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    times = {("textbook", None): []}
    cpus: dict = {}
    loads = []
    accs: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            s, load, stdout, cpu = timed([sys.executable, str(HERE / "textbook.py"), "--init",
                                          "kaiming", "--seed", "0", "--threads",
                                          str(args.textbook_threads)], ROOT, env_for(ROOT))
            times[("textbook", None)].append(s)
            cpus.setdefault(("textbook", None), []).append(cpu)
            loads.append(load)
            accs["textbook"] = float(stdout.split()[-1])
            print(f"round {r + 1}: textbook {s:.1f} s, {cpu:.1f} CPU s (load {load:.2f})", flush=True)
            for case in cases:
                for name, checkout in checkouts.items():
                    out = Path(tmp) / f"{name}-{case}"
                    cmd = [sys.executable, "-m", "initlab.cli", "study", *CASES[case][1], "--quiet",
                           "--out", str(out), "--force"]
                    s, load, _, cpu = timed(cmd, Path(tmp), env_for(checkout))
                    times.setdefault((name, case), []).append(s)
                    cpus.setdefault((name, case), []).append(cpu)
                    loads.append(load)
                    accs[(name, case)] = run_accuracies(out)
                    print(f"         {name} ({case}) {s:.1f} s, {cpu:.1f} CPU s (load {load:.2f})",
                          flush=True)
            if args.layouts:
                out = Path(tmp) / "one-process"
                s, load, _, _ = timed([sys.executable, "-m", "initlab.cli", "study", "--workers", "1",
                                    "--quiet", "--out", str(out), "--force"], Path(tmp), env_for(ROOT))
                accs["one-process"] = run_accuracies(out)
                print(f"         initlab (b) in one process {s:.1f} s (load {load:.2f})", flush=True)
    book = statistics.median(times[("textbook", None)])
    head = "| case | models | textbook loop, s | " + " | ".join(
        f"{name}, s | speed-up" for name in checkouts) + " |"
    print(f"\nWhole processes, start to exit; median of {args.repeats} (range); load average "
          f"{min(loads):.2f}–{max(loads):.2f} while measuring.\n")
    print(head)
    print("|" + "---|" * (3 + 2 * len(checkouts)))
    threads = f", {args.textbook_threads} thread(s)" if args.textbook_threads else ""
    print(f"| textbook loop (benchmarks/textbook.py{threads}) | 1 | {spread(times[('textbook', None)])} |"
          + " |" * (2 * len(checkouts)))
    for case in cases:
        n = CASES[case][0]
        row = f"| {LABELS[case]} | {n} | {n * book:.1f} |"
        for name in checkouts:
            t = times[(name, case)]
            row += f" {spread(t)} | {n * book / statistics.median(t):.2f}x |"
        print(row)
    print(f"\nCPU seconds of each command and the processes it started (the work; median of "
          f"{args.repeats}):\n")
    print("| case | textbook loop × models | " + " | ".join(f"{name} | ratio" for name in checkouts) + " |")
    print("|" + "---|" * (2 + 2 * len(checkouts)))
    cbook = statistics.median(cpus[("textbook", None)])
    for case in cases:
        n = CASES[case][0]
        row = f"| ({case}) | {n * cbook:.1f} |"
        for name in checkouts:
            c = statistics.median(cpus[(name, case)])
            row += f" {c:.1f} | {n * cbook / c:.2f}x |"
        print(row)
    # accuracies, same seeds
    print(f"\nkaiming, seed 0, test accuracy: textbook loop {100 * accs['textbook']:.2f} %", end="")
    for case in cases:
        a = accs[("initlab", case)].get(("kaiming", 0))
        if a is not None:
            print(f"; initlab ({case}) {100 * a:.2f} %", end="")
    print()
    if args.against:
        for case in cases:
            mine, theirs = accs[("initlab", case)], accs[("against", case)]
            same = sum(mine[k] == theirs.get(k) for k in mine)
            print(f"({case}) same seeds, test accuracy identical in {same} of {len(mine)} runs")
    if args.layouts and "b" in cases:
        pool, one = accs[("initlab", "b")], accs["one-process"]
        print("\n| init | single-thread workers (b), % | one process, % | Welch t |\n|---|---|---|---|")
        for init in INITS:
            a = [100 * v for (i, _), v in sorted(pool.items()) if i == init]
            b = [100 * v for (i, _), v in sorted(one.items()) if i == init]
            print(f"| {init} | {statistics.fmean(a):.2f} ± {statistics.stdev(a):.2f} | "
                  f"{statistics.fmean(b):.2f} ± {statistics.stdev(b):.2f} | {welch(a, b)} |")
        same = sum(pool[k] == one.get(k) for k in pool)
        print(f"identical run for run: {same} of {len(pool)}")
    return 0


# --------------------------------------------------------------------------------------------------
# initlab's engine
# --------------------------------------------------------------------------------------------------

def engine_run(seeds, inits, n_images: int, record: bool, device: str, workers: int = 0,
               threads: int = 0) -> dict:
    """The study as `initlab study` runs it (stacks over worker processes), timed end to end:
    model building, training, recording and the final test evaluation."""
    import torch

    from initlab import data, engine
    from initlab.experiments import study

    if threads:
        torch.set_num_threads(threads)
    ds = data.load_dataset("mnist", quiet=True)
    cfg = study.StudyConfig(inits=list(inits), seeds=len(seeds), first_seed=seeds[0], device=device,
                            workers=workers,
                            train=engine.TrainConfig(train_size=n_images if n_images < 60000 else None,
                                                     record=record))
    t0 = time.perf_counter()
    result = study.run_study(cfg, dataset=ds, progress=False)
    seconds = time.perf_counter() - t0
    acc = {(r["init"], r["seed"]): r["test_acc"] for r in result.runs}
    return {"seconds": seconds, "models": len(result.runs), "acc": acc}


def _child(job, queue):
    import torch
    fn, kwargs = job
    out = fn(**kwargs)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_mib_worker"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if kwargs.get("device") == "cuda":
        out["peak_mib_gpu"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(out)


def measure(fn, **kwargs) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=((fn, kwargs), queue))
    p.start()
    out = queue.get()
    p.join()
    return out


def kernel_step(models: int, keep_freed: bool, steps: int = 100) -> dict:
    """ms per training step (the kernel's forward and backward, then the optimizer) of a one-seed
    stack of LeNet-5s on one thread, and with the profiler on, the share of the step each operator
    takes."""
    import torch
    from torch.profiler import profile

    from initlab import engine
    from initlab import models as model_zoo

    torch.set_num_threads(1)
    if keep_freed:
        engine.keep_freed_memory()
    stack = engine.Stack([[model_zoo.build("lenet5") for _ in range(models)]], "cpu")
    opt = engine.StackOptimizer(list(stack.params.values()), engine.TrainConfig(), 10**6)
    x, y = torch.rand(1, 32, 1, 28, 28), torch.randint(0, 10, (1, 32))

    def step():
        stack.loss_and_grad(x, y)
        opt.step()

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - t0) / steps * 1e3
    with profile() as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = sorted(((e.self_cpu_time_total / total, e.key) for e in events), reverse=True)[:6]
    return {"ms": ms, "shares": shares, "ops": sum(e.count for e in events) / steps}


def kernel_against(checkout: str, models=(1, 5), rounds: int = 12, steps: int = 20) -> int:
    """ms per ``loss_and_grad`` of this checkout's LeNet kernel against ``checkout``'s, on the same
    parameters and batch in one process, one thread, interleaved round after round (median), and
    whether both give the same bits."""
    import importlib.util

    import torch

    from initlab import engine
    from initlab import models as model_zoo
    from initlab.engine import lenet_kernel as mine

    spec = importlib.util.spec_from_file_location(
        "other_lenet_kernel", Path(checkout) / "initlab" / "engine" / "lenet_kernel.py")
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    torch.set_num_threads(1)
    engine.keep_freed_memory()
    for m in models:
        stack = engine.Stack([[model_zoo.build("lenet5") for _ in range(m)]], "cpu")
        params = {k: v[0] for k, v in stack.params.items()}
        kernels = {name: module.LeNetKernel(params, {k: torch.zeros_like(v) for k, v in params.items()},
                                            "relu") for name, module in (("this", mine), ("other", other))}
        x, y = torch.rand(1, 32, 1, 28, 28), torch.randint(0, 10, (1, 32))
        losses = {name: k.loss_and_grad(x, y)[0] for name, k in kernels.items()}
        same = torch.equal(losses["this"], losses["other"]) and all(
            torch.equal(kernels["this"].g[k], kernels["other"].g[k]) for k in params)
        times = {name: [] for name in kernels}
        for r in range(rounds):                 # each goes first every other round
            for name, k in (list(kernels.items()) if r % 2 == 0 else reversed(kernels.items())):
                t0 = time.perf_counter()
                for _ in range(steps):
                    k.loss_and_grad(x, y)
                times[name].append((time.perf_counter() - t0) / steps * 1e3)
        a, b = statistics.median(times["this"]), statistics.median(times["other"])
        print(f"stack of {m}, one thread: this checkout {a:.2f} ms, {checkout} {b:.2f} ms per loss_and_grad "
              f"({b / a:.2f}x; median of {rounds} x {steps}); same bits: {same}")
    return 0


def profile_step(models=(1, 5)) -> int:
    """Print the step time of stacks of 1 and 5 models (each in a fresh process; for 5, also
    without the allocator setting) and the operators that take the step's time."""
    for m in models:
        r = measure(kernel_step, models=m, keep_freed=True)
        line = (f"LeNet-5 stack of {m}, batch 32, one thread: {r['ms']:.2f} ms per step "
                f"({r['ms'] / m:.2f} ms per model, {r['ops']:.0f} operator calls)")
        if m == max(models):
            without = measure(kernel_step, models=m, keep_freed=False)
            line += (f"; without keep_freed_memory {without['ms']:.2f} ms "
                     f"({100 * (1 - r['ms'] / without['ms']):.0f} % saved)")
        print(line)
        print("\n| operator | share of the step (profiler) |\n|---|---|")
        for share, name in r["shares"]:
            print(f"| {name} | {100 * share:.1f} % |")
        print()
    return 0


def _noop(item, steps):
    return item


def pool_start(rounds: int = 5) -> int:
    """Seconds for the worker pool to start two workers and hand each a trivial item: forked
    (single-threaded workers on Linux) against spawned (what workers with several threads get)."""
    from initlab.engine import pool

    times = {"fork": [], "spawn": []}
    for _ in range(rounds):
        for threads in (1, 2):
            t0 = time.perf_counter()
            pool.run(_noop, [0, 1], workers=2, threads=threads)
            times[pool.start_method(threads)].append(time.perf_counter() - t0)
    for method, ts in times.items():
        if not ts:
            continue
        print(f"two {method}ed workers, start to result: {statistics.median(ts):.2f} s "
              f"({min(ts):.2f}–{max(ts):.2f}; median of {rounds})")
    return 0


PHASES = """
import collections, json, sys, time
start = time.perf_counter()
import torch
from initlab import cli
from initlab.commands import study as command
from initlab.engine import optim, pool, training
from initlab.experiments import study, study_report
from initlab.runs import runner
seconds = collections.Counter({"imports (torch, initlab)": time.perf_counter() - start})
def timed(owner, name, label):
    fn = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - t0
    setattr(owner, name, wrapper)
for owner, name, label in [
        (command, "load_data", "data"), (study, "_train_block", "training in this process"),
        (training.Stack, "loss_and_grad", "  forward and backward"), (optim.StackOptimizer, "step", "  optimizer"),
        (training, "_snapshot", "  recording"), (training, "_record_layers", "  recording"),
        (pool, "run", "training on worker processes"), (runner, "rebuild", "tables from the store"),
        (study_report, "write_report", "report"), (study_report, "make_plots", "  figures")]:
    timed(owner, name, label)
with open("/dev/null", "w") as sink:
    sys.stdout = sink
    cli.main(sys.argv[1:])
    sys.stdout = sys.__stdout__
seconds["whole process after start-up"] = time.perf_counter() - start
print(json.dumps(seconds))
"""


def phases(case: str) -> int:
    """Where one ``initlab study`` command's wall clock goes, timed inside a fresh process (a wrapper
    around each phase's function); the worker processes' own phases are not seen."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", PHASES, "study", *CASES[case][1], "--quiet", "--out",
               str(Path(tmp) / "out")]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env_for(ROOT), check=True)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{LABELS[case]}; load average {os.getloadavg()[0]:.2f}\n\n| phase | s |\n|---|---|")
    for label, s in seconds.items():
        print(f"| {label} | {s:.2f} |")
    return 0


def lenet_step_flops(batch: int = 32) -> int:
    """Floating-point operations of one LeNet-5 training step (forward, gradients of the weights and
    of every layer's input but the first), counted from the layers' shapes: 2 per multiply-add."""
    import torch
    from torch import nn

    from initlab import models as model_zoo

    model = model_zoo.build("lenet5")
    macs = []

    def count(layer, inputs, output):
        if isinstance(layer, nn.Conv2d):
            per_out = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            macs.append(output[0].numel() * per_out)
        else:
            macs.append(layer.in_features * layer.out_features)

    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.register_forward_hook(count)
    model(torch.zeros(1, 1, 28, 28))
    forward = sum(macs)
    return 2 * batch * (forward + forward + forward - macs[0])   # forward, weights, inputs


def roofline(models: int = 50, steps: int = 1875) -> int:
    """The least time ``models`` LeNet-5s x ``steps`` steps can take on this machine's cores: the
    step's operations at the rate one core multiplies 512 x 512 matrices (median of 20), every core."""
    import torch

    from initlab.engine.pool import cores

    torch.set_num_threads(1)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    rate = 2 * 512 ** 3 / statistics.median(times)
    flops = lenet_step_flops()
    n = cores()
    print(f"LeNet-5 step at batch 32: {flops / 1e6:.1f} MFLOP; one core: {rate / 1e9:.1f} GFLOP/s "
          f"(512 x 512 matmul); {models} models x {steps} steps on {n} cores at that rate: "
          f"{models * steps * flops / (rate * n):.0f} s")
    return 0


def per_model_epoch(r: dict, n_images: int) -> float:
    return r["seconds"] / r["models"] * 60000 / n_images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every command (default 3)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES),
                    help="which studies to time (default: a b c)")
    ap.add_argument("--against", metavar="DIR", help="also time the initlab of this checkout "
                    "(e.g. a git worktree of an earlier commit), interleaved, and compare accuracies")
    ap.add_argument("--layouts", action="store_true", help="also train the default study in one "
                    "process (--workers 1) and compare its accuracies with the worker pool's")
    ap.add_argument("--textbook-threads", type=int, default=0, help="torch threads of the textbook "
                    "loop (default: torch's, one per core; 1 is the fair yardstick on a busy machine, "
                    "where two OpenMP threads wait on each other)")
    ap.add_argument("--profile", action="store_true",
                    help="only profile one training step of 1- and 5-model stacks and exit")
    ap.add_argument("--detail", action="store_true", help="the in-process comparison instead: "
                    "recording overhead, peak memory, scaling with models and images (about 9 min)")
    ap.add_argument("--quick", action="store_true", help="--detail: 10,000 images instead of 60,000")
    ap.add_argument("--device", default="cpu", help="--detail: cpu or cuda")
    ap.add_argument("--seeds", type=int, default=3, help="--detail: seeds for the accuracy comparison")
    ap.add_argument("--phases", choices=list(CASES), help="only time the phases of one case's "
                    "command inside its process, and exit")
    ap.add_argument("--roofline", action="store_true", help="only print the least time 50 models "
                    "could take at this machine's matrix-multiply rate, and exit")
    ap.add_argument("--kernel-against", metavar="DIR", help="only time this checkout's LeNet kernel "
                    "against DIR's, interleaved in one process (each first every other round), and exit")
    ap.add_argument("--pool-start", action="store_true",
                    help="only time starting the worker pool, forked and spawned, and exit")
    args = ap.parse_args(argv)
    if args.profile:
        return profile_step()
    if args.pool_start:
        return pool_start()
    if args.kernel_against:
        return kernel_against(args.kernel_against)
    if args.roofline:
        return roofline()
    if args.phases:
        return phases(args.phases)
    if not args.detail:
        return whole(args)
    import torch

    n = 10_000 if args.quick else 60_000
    seeds = list(range(args.seeds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"{n:,} training images per model-epoch; load average {os.getloadavg()[0]:.2f}", flush=True)

    # 1. the textbook loop: xavier and kaiming, every seed
    book = [measure(textbook, seed=s, init_name=i, n_images=n, device=args.device)
            for i in ("xavier", "kaiming") for s in seeds]
    book_s = statistics.fmean(per_model_epoch(r, n) for r in book)
    # 2. the engine: the whole study (5 inits x seeds), as `initlab study` runs it, recording on and
    #    off, alternately, twice each: the fastest of each pair is the least disturbed by the machine
    ons, offs = [], []
    for _ in range(2):
        ons.append(measure(engine_run, seeds=seeds, inits=INITS, n_images=n, record=True,
                           device=args.device))
        offs.append(measure(engine_run, seeds=seeds, inits=INITS, n_images=n, record=False,
                            device=args.device))
    eng = min(ons, key=lambda r: r["seconds"])
    bare = min(offs, key=lambda r: r["seconds"])
    one = measure(engine_run, seeds=seeds, inits=INITS, n_images=n, record=True, device=args.device,
                  workers=1)
    eng_s, bare_s, one_s = (per_model_epoch(r, n) for r in (eng, bare, one))
    print("\n| loop | s / model-epoch | model-epochs / s | peak memory (MiB): main process, "
          "largest worker |")
    print("|---|---|---|---|")
    print(f"| textbook (DataLoader, 1 model, {torch.get_num_threads()} threads) | {book_s:.2f} | "
          f"{1 / book_s:.3f} | {max(r['peak_mib'] for r in book):.0f} |")
    for label, r, v in ((f"initlab, {eng['models']} models, default workers, recording on", eng, eng_s),
                        (f"initlab, {bare['models']} models, default workers, recording off", bare, bare_s),
                        (f"initlab, {one['models']} models, 1 process, recording on", one, one_s)):
        worker = f", {r['peak_mib_worker']:.0f}" if r["peak_mib_worker"] else ""
        print(f"| {label} | {v:.2f} | {1 / v:.3f} | {r['peak_mib']:.0f}{worker} |")
    print(f"\nspeed-up over the textbook loop, recording on: {book_s / eng_s:.2f}x "
          f"(1 process: {book_s / one_s:.2f}x)")
    times = lambda rs: ", ".join(f"{r['seconds']:.1f}" for r in rs)
    print(f"recording overhead: {100 * (eng['seconds'] / bare['seconds'] - 1):.1f} % of training time "
          f"(fastest of: on {times(ons)} s, off {times(offs)} s)")
    print(f"full study ({eng['models']} models, one epoch each), wall time: {eng['seconds']:.1f} s")

    print("\n| init | textbook test acc (mean ± std) | initlab test acc (mean ± std) | difference | Welch t |")
    print("|---|---|---|---|---|")
    for i in ("xavier", "kaiming"):
        a = [100 * r["acc"][(i, s)] for r in book for s in seeds if (i, s) in r["acc"]]
        b = [100 * eng["acc"][(i, s)] for s in seeds]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")
        se = (sd(a) ** 2 / len(a) + sd(b) ** 2 / len(b)) ** 0.5
        diff = statistics.fmean(b) - statistics.fmean(a)
        print(f"| {i} | {statistics.fmean(a):.2f} ± {sd(a):.2f} | {statistics.fmean(b):.2f} ± "
              f"{sd(b):.2f} | {diff:+.2f} | {diff / se if se else 0.0:+.2f} |")

    # 3. scaling, in one single-threaded process: models trained together, training images
    part = 10_000
    print(f"\n| models in one stack (1 process, 1 thread) | s per model-epoch ({part:,} images) |")
    print("|---|---|")
    for m in (1, 5, 15, 50):
        n_seeds = max(1, m // 5)
        inits = INITS[:m] if m < 5 else INITS
        r = measure(engine_run, seeds=list(range(n_seeds)), inits=inits, n_images=part, record=True,
                    device=args.device, workers=1, threads=1)
        print(f"| {r['models']} | {per_model_epoch(r, part):.2f} |", flush=True)
    print("\n| training images | initlab seconds (15 models, default workers, recording on) |")
    print("|---|---|")
    for images in (10_000, 30_000, 60_000):
        r = eng if images == n else measure(engine_run, seeds=seeds, inits=INITS, n_images=images,
                                            record=True, device=args.device)
        print(f"| {images:,} | {r['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
