"""initlab's engine against the textbook LAB03-1 loop, side by side in one run.

    python benchmarks/engine_speed.py                 # the full comparison (about 10 min on 2 cores)
    python benchmarks/engine_speed.py --quick         # fewer images, for a smoke test

Every measurement runs in a fresh child process (so its peak memory is its own), one after another.
Printed: seconds per model-epoch and model-epochs per second for each, their ratio, peak memory, the
recording overhead (engine with recording vs without), and how the engine's time grows with the number
of models trained together and with the number of training images. Accuracies of both, same seeds.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
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
    model = LeNet5().to(device)
    init.initialize(model, init_name, generator=torch.Generator().manual_seed(10_000 + seed))
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

def engine_run(seeds, inits, n_images: int, record: bool, device: str) -> dict:
    import torch

    from initlab import data, engine, study

    ds = data.load_dataset("mnist", quiet=True)
    cfg = study.StudyConfig(inits=list(inits), seeds=len(seeds), first_seed=seeds[0], device=device,
                            train=engine.TrainConfig(train_size=n_images if n_images < 60000 else None,
                                                     record=record))
    dev = study.resolve_device(device)
    d = engine.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, cfg.train, dev)
    models = [[study.build_initialized(cfg, spec, s) for spec in inits] for s in seeds]
    res = engine.train_stack(models, list(seeds), d, cfg.train)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    acc = {(spec, s): float(res.test_acc[a, b]) for a, s in enumerate(seeds) for b, spec in enumerate(inits)}
    return {"seconds": res.wall_seconds, "models": len(seeds) * len(inits), "acc": acc}


def _child(job, queue):
    import torch
    fn, kwargs = job
    out = fn(**kwargs)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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


def per_model_epoch(r: dict, n_images: int) -> float:
    return r["seconds"] / r["models"] * 60000 / n_images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 images instead of 60,000")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--seeds", type=int, default=3, help="seeds for the accuracy comparison (default 3)")
    args = ap.parse_args(argv)
    import torch

    n = 10_000 if args.quick else 60_000
    seeds = list(range(args.seeds))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"{n:,} training images per model-epoch", flush=True)

    # 1. the textbook loop: xavier and kaiming, every seed
    book = [measure(textbook, seed=s, init_name=i, n_images=n, device=args.device)
            for i in ("xavier", "kaiming") for s in seeds]
    book_s = statistics.fmean(per_model_epoch(r, n) for r in book)
    # 2. the engine: the whole study (5 inits x seeds) at once, recording on and off
    eng = measure(engine_run, seeds=seeds, inits=INITS, n_images=n, record=True, device=args.device)
    bare = measure(engine_run, seeds=seeds, inits=INITS, n_images=n, record=False, device=args.device)
    eng_s, bare_s = per_model_epoch(eng, n), per_model_epoch(bare, n)
    print("\n| loop | s / model-epoch | model-epochs / s | peak memory (MiB) |")
    print("|---|---|---|---|")
    print(f"| textbook (DataLoader, 1 model) | {book_s:.2f} | {1 / book_s:.3f} | "
          f"{max(r['peak_mib'] for r in book):.0f} |")
    print(f"| initlab engine, {eng['models']} models, recording on | {eng_s:.2f} | {1 / eng_s:.3f} | "
          f"{eng['peak_mib']:.0f} |")
    print(f"| initlab engine, {bare['models']} models, recording off | {bare_s:.2f} | {1 / bare_s:.3f} | "
          f"{bare['peak_mib']:.0f} |")
    print(f"\nspeed-up, recording on: {book_s / eng_s:.2f}x; recording overhead: "
          f"{100 * (eng['seconds'] / bare['seconds'] - 1):.1f} % of training time")
    print(f"full study training time ({eng['models']} models): {eng['seconds']:.1f} s")

    print("\n| init | textbook test acc (mean ± std) | engine test acc (mean ± std) |")
    print("|---|---|---|")
    for i in ("xavier", "kaiming"):
        a = [r["acc"][(i, s)] for r in book for s in seeds if (i, s) in r["acc"]]
        b = [eng["acc"][(i, s)] for s in seeds]
        print(f"| {i} | {100 * statistics.fmean(a):.2f} ± {100 * statistics.pstdev(a):.2f} | "
              f"{100 * statistics.fmean(b):.2f} ± {100 * statistics.pstdev(b):.2f} |")

    # 3. scaling: number of models trained together, number of images (recording on)
    part = 10_000
    print(f"\n| models together | s per model-epoch ({part:,} images, recording on) |")
    print("|---|---|")
    for m in (1, 5, 15, 50):
        n_seeds = max(1, m // 5)
        inits = INITS[:m] if m < 5 else INITS
        r = measure(engine_run, seeds=list(range(n_seeds)), inits=inits, n_images=part, record=True,
                    device=args.device)
        print(f"| {r['models']} | {per_model_epoch(r, part):.2f} |", flush=True)
    print("\n| training images | engine seconds (15 models, recording on) |")
    print("|---|---|")
    for images in (10_000, 30_000, 60_000):
        r = eng if images == n else measure(engine_run, seeds=seeds, inits=INITS, n_images=images,
                                            record=True, device=args.device)
        print(f"| {images:,} | {r['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
