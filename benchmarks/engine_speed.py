"""initlab's engine against the textbook LAB03-1 loop, side by side in one run.

    python benchmarks/engine_speed.py                 # the full comparison (about 9 min on 2 cores)
    python benchmarks/engine_speed.py --quick         # fewer images, for a smoke test
    python benchmarks/engine_speed.py --profile       # one LeNet-5 step: where its time goes

Every measurement runs in a fresh child process (so its peak memory is its own), one after another.
Printed: seconds per model-epoch and model-epochs per second for each, their ratio, peak memory, the
recording overhead (engine with recording vs without), and how the engine's time grows with the number
of models trained together and with the number of training images. Accuracies of both, same seeds.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time

INITS = ("zeros", "uniform", "normal", "xavier", "kaiming")


# --------------------------------------------------------------------------------------------------
# The textbook loop, written the way the lab's students write it.
# --------------------------------------------------------------------------------------------------

def textbook(seed: int, init_name: str, n_images: int, device: str) -> dict:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from initlab import data, init

    class MNIST(Dataset):                       # what torchvision.datasets.MNIST + ToTensor() do
        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.images[i].float().div(255).unsqueeze(0), int(self.labels[i])

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 6, 5)
            self.c3 = nn.Conv2d(6, 16, 5)
            self.c5 = nn.Conv2d(16, 120, 5)
            self.f6 = nn.Linear(120, 84)
            self.output = nn.Linear(84, 10)

        def forward(self, x):
            x = F.pad(x, (2, 2, 2, 2))
            x = F.avg_pool2d(F.relu(self.c1(x)), 2)
            x = F.avg_pool2d(F.relu(self.c3(x)), 2)
            x = F.relu(self.c5(x)).flatten(1)
            return self.output(F.relu(self.f6(x)))

    ds = data.load_dataset("mnist", quiet=True)
    train = MNIST(ds.train_images[:n_images], ds.train_labels[:n_images])
    loader = DataLoader(train, batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model = LeNet5()       # drawn on the CPU (the generator's device), so every device starts alike
    init.initialize(model, init_name, generator=torch.Generator().manual_seed(10_000 + seed))
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        x = ds.test_images.float().div(255).unsqueeze(1).to(device)
        acc = (model(x).argmax(1).cpu() == ds.test_labels).float().mean().item()
    return {"seconds": seconds, "models": 1, "acc": {(init_name, seed): acc}}


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
    """ms per training step of a one-seed stack of LeNet-5s on one thread (the kernel path), and
    with the profiler on, the share of the step each operator takes."""
    import torch
    from torch.profiler import profile

    from initlab import engine
    from initlab import models as model_zoo

    torch.set_num_threads(1)
    if keep_freed:
        engine.keep_freed_memory()
    stack = engine.Stack([[model_zoo.build("lenet5") for _ in range(models)]], "cpu")
    x, y = torch.rand(1, 32, 1, 28, 28), torch.randint(0, 10, (1, 32))
    alive = torch.ones(1, models, dtype=torch.bool)
    for _ in range(10):
        stack.loss_and_grad(x, y, alive)
    t0 = time.perf_counter()
    for _ in range(steps):
        stack.loss_and_grad(x, y, alive)
    ms = (time.perf_counter() - t0) / steps * 1e3
    with profile() as prof:
        for _ in range(steps):
            stack.loss_and_grad(x, y, alive)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = sorted(((e.self_cpu_time_total / total, e.key) for e in events), reverse=True)[:6]
    return {"ms": ms, "shares": shares}


def profile_step(models: int = 5) -> int:
    """Print the step time with and without the allocator setting (each in a fresh process) and
    the operators that take the step's time."""
    with_keep = measure(kernel_step, models=models, keep_freed=True)
    without = measure(kernel_step, models=models, keep_freed=False)
    print(f"LeNet-5 stack of {models}, batch 32, one thread: {with_keep['ms']:.2f} ms per step "
          f"({with_keep['ms'] / models:.2f} ms per model); without keep_freed_memory "
          f"{without['ms']:.2f} ms ({100 * (1 - with_keep['ms'] / without['ms']):.0f} % saved)")
    print("\n| operator | share of the step (profiler) |")
    print("|---|---|")
    for share, name in with_keep["shares"]:
        print(f"| {name} | {100 * share:.1f} % |")
    return 0


def per_model_epoch(r: dict, n_images: int) -> float:
    return r["seconds"] / r["models"] * 60000 / n_images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 images instead of 60,000")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy comparison (default 3)")
    ap.add_argument("--profile", action="store_true",
                    help="only profile one training step of a 5-model stack and exit")
    args = ap.parse_args(argv)
    if args.profile:
        return profile_step()
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
