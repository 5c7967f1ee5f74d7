"""The engine's `--device cuda` path on a GPU, in one go: its tests, two studies and the textbook loop,
timed; one JSON file of results.

    bash benchmarks/gpu_check.sh                    # on the GPU machine (the .sh sets up the paths)
    python benchmarks/gpu_check.py --device cpu --quick      # the whole script end to end, no GPU

Steps, each a child process with a timeout, under one overall budget (``--budget``, default 440 s,
so the whole check ends inside 8 minutes):

1. ``env``: GPU name, memory and compute capability, torch / CUDA / cuDNN versions, TF32 settings;
2. ``tests``: ``pytest -m cuda tests/test_cuda.py`` (``-m "not cuda"`` with ``--device cpu``): the
   LeNet kernel's gradients against autograd, the engine against the plain loop, a diverged model
   masked in its stack;
3. ``study_default``: ``initlab study --device D --seeds 3 --quiet`` (5 inits x 3 seeds = 15 models);
4. ``textbook``: the textbook loop (``engine_speed.textbook``: an ``nn.Module`` LeNet-5, a
   per-sample ``DataLoader``, batch 32, Adam 1e-3, one epoch, the test set) for kaiming and xavier,
   seed 0, on the same device;
5. ``study_250``: the same study with ``--seeds 50`` (250 models), last: its time on a GPU is the
   unknown, and it gets whatever budget is left (its progress bar stays on, so a timeout's log
   still shows how far it got).

A step that fails or runs out of time is recorded as such (``status``: ok | failed | timeout |
skipped) and the others still run. Measured per step: wall seconds of the child process (start to
exit: imports, data, training, records, report), the training seconds the study itself records
(``runs.csv``: ``stack_seconds``), models per second on both, peak GPU memory as torch's caching
allocator saw it in the child (``max_memory_allocated`` / ``max_memory_reserved``) and as
``nvidia-smi`` saw the whole device (sampled every 100 ms; CUDA context included), or peak RSS on
the CPU, and the per-init test accuracy (mean, std, min, max over seeds) from ``runs.csv``.

Written to ``--out`` (default ``$OUT/gpu_check.json``, else ``runs/gpu_check/gpu_check.json``), with
``gpu_check.log`` (every child's output), and the two studies' ``runs.csv`` beside it. Exit code 0
when every step ran and passed, 1 otherwise; the JSON is written either way.

The GPU machine has no network and no MNIST cache: the data come from ``--data-dir`` (default
``.gpucarry/mnist`` when present: the four IDX files that ``benchmarks/gpu_prepare.sh`` puts there).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
INITS = ("zeros", "uniform", "normal", "xavier", "kaiming")
TEXTBOOK_INITS = ("kaiming", "xavier")
MIB = 2 ** 20
# per-step caps (seconds); every step also stops at the overall budget; study_250 gets the rest
CAPS = {"env": 60, "tests": 120, "study_default": 120, "textbook": 90}
MIN_STEP_S = 10        # a step with less budget left than this is skipped, not started


# --------------------------------------------------------------------------------------------------
# Children: each runs in its own process and writes one JSON file
# --------------------------------------------------------------------------------------------------


def _failure_text(case) -> str:
    """The message of a junit test case's failure (or error) element, at most 300 characters."""
    found = case.find("failure") if case.find("failure") is not None else case.find("error")
    return found.get("message", "")[:300]

def _peaks(device: str) -> dict:
    """Peak memory of this process: the CUDA caching allocator's, or resident memory on the CPU."""
    out = {"rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_peak_children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    if device.startswith("cuda"):
        import torch
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["gpu_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
            out["gpu_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / MIB
    return out


def child_env(device: str) -> dict:
    import numpy
    import torch

    import initlab

    env = {"python": platform.python_version(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "torch": torch.__version__, "numpy": numpy.__version__,
           "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "torch_threads": torch.get_num_threads(), "initlab_file": initlab.__file__,
           "torch_pinned_in_pyproject": _pinned_torch()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update({
            "gpu_name": p.name, "gpu_count": torch.cuda.device_count(),
            "gpu_memory_mib": p.total_memory / MIB,
            "gpu_capability": f"{p.major}.{p.minor}", "gpu_multiprocessors": p.multi_processor_count,
            "cudnn": torch.backends.cudnn.version(),
            # what the engine runs with, untouched: cuDNN convolutions in TF32 unless turned off
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        })
    return env


# Where a study's wall time goes: cumulative seconds in these functions (they nest: train_stack
# holds the record points, _snapshot and _record_layers, and the final Stack.evaluate; commit is the
# run store's writes, rebuild the tables, write_report the plots). On CUDA each is bracketed by a
# synchronize, so queued GPU work is charged to the phase that queued it. A name that no longer
# resolves (modules moved) is listed as missing; the check runs on without it. Only this process is
# timed: on a GPU that is all of the study; on the CPU the workers' training is not in it.
PHASES = ("initlab.data:load_dataset", "initlab.engine.training:train_stack",
          "initlab.engine.training:_snapshot", "initlab.engine.training:_record_layers",
          "initlab.engine.training:Stack.evaluate", "initlab.runs.backends:commit",
          "initlab.runs.rebuild:rebuild", "initlab.experiments.study_report:write_report")


def _time_phases(names) -> tuple:
    import functools
    import importlib

    import torch

    clocks: Dict[str, dict] = {}
    missing = []

    def sync():
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    for name in names:
        module_name, _, path = name.partition(":")
        try:
            owner = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            fn = getattr(owner, attr)
        except (ImportError, AttributeError):
            missing.append(name)
            continue
        clock = clocks[name] = {"seconds": 0.0, "calls": 0}

        def timed(*a, _fn=fn, _clock=clock, **kw):
            sync()
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                sync()
                _clock["seconds"] += time.perf_counter() - t0
                _clock["calls"] += 1

        setattr(owner, attr, functools.wraps(fn)(timed))
    return clocks, missing


def child_study(device: str, argv: List[str]) -> dict:
    """``initlab study ARGV`` in this process, through the console script's own entry point (read
    from pyproject.toml, so a moved CLI module is followed), with the time spent in each of
    ``PHASES``, then this process's peak memory."""
    import importlib

    module, _, func = _entry_point().partition(":")
    main = getattr(importlib.import_module(module), func)
    clocks, missing = _time_phases(PHASES)
    t0 = time.perf_counter()
    rc = main(argv)
    phases = {k: {"seconds": round(v["seconds"], 3), "calls": v["calls"]} for k, v in clocks.items()}
    return {"rc": rc, "seconds_in_process": time.perf_counter() - t0, "phases": phases,
            "phases_missing": missing, **_peaks(device)}


def child_textbook(device: str, n_images: int, inits: List[str]) -> dict:
    """The textbook loop of ``benchmarks/engine_speed.py``, once per init (seed 0), in this process."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from engine_speed import textbook

    runs = []
    for name in inits:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        r = textbook(seed=0, init_name=name, n_images=n_images, device=device)
        runs.append({"init": name, "seed": 0, "train_seconds": r["seconds"],
                     "seconds_with_data_and_eval": time.perf_counter() - t0,
                     "test_acc": r["acc"][(name, 0)], **_peaks(device)})
    return {"runs": runs, **_peaks(device)}


def _entry_point() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]["initlab"]


def _pinned_torch() -> Optional[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    return next((d for d in deps if d.replace(" ", "").startswith("torch")), None)


def run_child(args) -> int:
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    if args.child == "env":
        result = child_env(args.device)
    elif args.child == "study":
        result = child_study(args.device, rest)
    else:
        result = child_textbook(args.device, args.images, rest)
    Path(args.child_out).write_text(json.dumps(result, indent=2) + "\n")
    return int(result.get("rc") or 0)


# --------------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------------

class GpuMemSampler:
    """Peak ``memory.used`` of GPU 0 by ``nvidia-smi``, sampled every 100 ms while a step runs."""

    def __init__(self, enabled: bool) -> None:
        self.peak: Optional[float] = None
        self.proc = None
        if enabled and shutil.which("nvidia-smi"):
            try:
                self.proc = subprocess.Popen(
                    ["nvidia-smi", "--id=0", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                     "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            except OSError:
                return
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                value = float(line.strip().split(",")[0])
            except ValueError:
                continue
            self.peak = value if self.peak is None else max(self.peak, value)

    def stop(self) -> Optional[float]:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.thread.join(timeout=2)
        return self.peak


def nvidia_smi() -> Optional[dict]:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--id=0", "--query-gpu=name,driver_version,memory.total,"
                              "memory.used,clocks.max.sm", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        name, driver, total, used, sm = (v.strip() for v in out.split(","))
        return {"name": name, "driver": driver, "memory_total_mib": float(total),
                "memory_used_idle_mib": float(used), "sm_clock_max_mhz": sm}
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class Driver:
    def __init__(self, args) -> None:
        self.args = args
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + args.budget
        self.out = Path(args.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out.parent / "gpu_check.log"
        self.log_path.write_text("")
        self.work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="gpu_check-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in self.env.get(
            "PYTHONPATH", "").split(os.pathsep) if p])
        if args.data_dir:
            self.env["INITLAB_DATA_DIR"] = str(Path(args.data_dir).resolve())

    def say(self, text: str) -> None:
        print(text, flush=True)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step(self, name: str, cmd: List[str], cap: Optional[float]) -> dict:
        """Run ``cmd`` as a child in its own process group, with a timeout of ``cap`` or what is
        left of the budget; a timeout kills the whole group (the study's workers too)."""
        timeout = self.left() if cap is None else min(cap, self.left())
        if timeout < MIN_STEP_S:
            self.say(f"[{name}] skipped: {max(0.0, self.left()):.0f} s of the budget left")
            return {"status": "skipped", "reason": f"budget: {max(0.0, self.left()):.0f} s left"}
        self.say(f"[{name}] {' '.join(cmd[1:])}  (timeout {timeout:.0f} s)")
        step_log = self.work / f"{name}.log"
        sampler = GpuMemSampler(self.args.device.startswith("cuda"))
        t0 = time.perf_counter()
        try:
            with open(step_log, "w") as log:
                p = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
                try:
                    rc = p.wait(timeout=timeout)
                    status = "ok" if rc == 0 else "failed"
                except BaseException as e:   # the timeout, or Ctrl-C: take the whole group down
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    if not isinstance(e, subprocess.TimeoutExpired):
                        raise
                    rc, status = None, "timeout"
        finally:
            peak = sampler.stop()
        wall = time.perf_counter() - t0
        text = step_log.read_text(errors="replace")
        with open(self.log_path, "a") as f:
            f.write(f"\n===== {name}: {' '.join(cmd)}\n{text}\n===== {name}: {status}, rc {rc}, "
                    f"{wall:.1f} s\n")
        result = {"status": status, "rc": rc, "wall_seconds": round(wall, 2),
                  "timeout_s": round(timeout, 1), "command": " ".join(cmd[1:])}
        if peak is not None:
            result["gpu_used_peak_mib_nvidia_smi"] = peak
        if status != "ok":
            result["output_tail"] = text[-3000:]
            self.say(f"[{name}] {status.upper()} after {wall:.1f} s; the end of its output:")
            self.say("\n".join("    " + line for line in text.splitlines()[-25:]))
        else:
            self.say(f"[{name}] ok, {wall:.1f} s")
        return result

    def child(self, kind: str, tag: str, extra: List[str], cap: Optional[float], rest: List[str]):
        result_file = self.work / f"{tag}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", self.args.device,
               "--child", kind, "--child-out", str(result_file), *extra, "--", *rest]
        result = self.step(tag, cmd, cap)
        if result_file.exists():
            result.update(json.loads(result_file.read_text()))
        return result

    # ---- the steps --------------------------------------------------------------------------

    def tests(self) -> dict:
        junit = self.work / "junit.xml"
        marker = "cuda" if self.args.device.startswith("cuda") else "not cuda"
        cmd = [sys.executable, "-m", "pytest", "-m", marker, "tests/test_cuda.py", "-q", "-rfEs",
               "-p", "no:cacheprovider", f"--junitxml={junit}"]
        result = self.step("tests", cmd, CAPS["tests"])
        result.update(parse_junit(junit))
        if result["status"] == "ok" and (not result.get("passed") or result.get("skipped")):
            result["status"] = "failed"          # nothing ran, or a cuda test skipped: no evidence
            result["reason"] = "no test passed, or some were skipped"
        return result

    def study(self, tag: str, seeds: int, quiet: bool) -> dict:
        folder = self.work / tag
        argv = ["study", "--device", self.args.device, "--seeds", str(seeds), "--out", str(folder),
                "--force"] + (["--quiet"] if quiet else [])
        if self.args.data_dir:
            argv += ["--data-dir", str(Path(self.args.data_dir).resolve())]
        if self.args.quick:
            argv += ["--train-size", str(self.args.images)]
        cap = CAPS.get(tag)
        result = self.child("study", tag, [], cap, argv)
        runs = folder / "runs.csv"
        if runs.exists():
            shutil.copyfile(runs, self.out.parent / f"{tag}_runs.csv")
            result.update(summarize_runs(runs, result.get("wall_seconds")))
        return result

    def textbook(self) -> dict:
        result = self.child("textbook", "textbook", ["--images", str(self.args.images)],
                            CAPS["textbook"], list(TEXTBOOK_INITS))
        runs = result.get("runs") or []
        if runs:
            train = statistics.fmean(r["train_seconds"] for r in runs)
            result["models"] = len(runs)
            result["train_seconds_per_model"] = round(train, 3)
            result["models_per_second_train"] = round(1 / train, 4)
            result["models_per_second_wall"] = round(len(runs) / result["wall_seconds"], 4)
            result["test_acc"] = {r["init"]: r["test_acc"] for r in runs}
        return result

    def run(self) -> int:
        a = self.args
        report = {"check": "initlab gpu_check", "device": a.device, "quick": a.quick,
                  "train_images": a.images, "budget_s": a.budget,
                  "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "data_dir": a.data_dir, "git": git_state(), "nvidia_smi": nvidia_smi(),
                  "steps": {}}
        steps = report["steps"]
        self.say(f"gpu_check: device {a.device}, {'quick, ' if a.quick else ''}{a.images:,} training "
                 f"images, budget {a.budget:.0f} s; results to {self.out}")
        try:
            steps["env"] = self.child("env", "env", [], CAPS["env"], [])
            env = steps["env"]
            self.say(f"    {env.get('gpu_name') or 'no GPU'}; torch {env.get('torch')} (CUDA "
                     f"{env.get('torch_cuda')}, cuDNN {env.get('cudnn')}); initlab from "
                     f"{env.get('initlab_file')}")
            if "tests" not in a.skip:
                steps["tests"] = self.tests()
            if "study_default" not in a.skip:
                steps["study_default"] = self.study("study_default", a.seeds, quiet=True)
            if "textbook" not in a.skip:
                steps["textbook"] = self.textbook()
            if "study_250" not in a.skip:
                steps["study_250"] = self.study("study_250", a.seeds_large, quiet=False)
        except KeyboardInterrupt:
            report["interrupted"] = True
        report["comparison"] = compare(steps)
        report["total_wall_seconds"] = round(time.perf_counter() - self.t_start, 1)
        report["ok"] = bool(steps) and all(s.get("status") == "ok" for s in steps.values()) \
            and not report.get("interrupted")
        self.out.write_text(json.dumps(report, indent=2) + "\n")
        if not a.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        self.say("\n" + summary(report) + f"\nwritten: {self.out} (and {self.log_path.name}, the "
                 "studies' runs.csv, beside it)")
        return 0 if report["ok"] else 1


def parse_junit(path: Path) -> dict:
    import xml.etree.ElementTree as ET

    if not path.exists():
        return {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}: "
              f"{_failure_text(case)}"
              for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"collected": n["tests"], "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
            "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"],
            "failures": failed}


def summarize_runs(path: Path, wall: Optional[float]) -> dict:
    """Models, training seconds (the stacks' own clocks), models per second, and per-init test
    accuracy from a study's runs.csv."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    by_init: Dict[str, List[float]] = {}
    diverged: Dict[str, int] = {}
    for r in rows:
        by_init.setdefault(r["init"], []).append(float(r["test_acc"]))
        diverged[r["init"]] = diverged.get(r["init"], 0) + (r.get("diverged") == "True")
    # the stacks' own clocks (start of training to the final test accuracy), summed: on a GPU the
    # stacks train one after another in one process; CPU workers train theirs side by side
    train = sum(float(r["train_seconds"]) for r in rows)
    acc = {}
    for name, values in by_init.items():
        acc[name] = {"mean": round(statistics.fmean(values), 5),
                     "std": round(statistics.stdev(values), 5) if len(values) > 1 else None,
                     "min": min(values), "max": max(values), "n": len(values),
                     "diverged": diverged[name]}
    out = {"models": len(rows), "train_seconds": round(train, 2),
           "models_per_second_train": round(len(rows) / train, 3) if train else None,
           "stacks": len({(r["stack_seconds"], r["stack_size"]) for r in rows}),
           "test_acc": acc}
    if wall:
        out["models_per_second_wall"] = round(len(rows) / wall, 3)
    return out


def compare(steps: dict) -> dict:
    """The engine's models per second over the textbook loop's, on training time and on wall time."""
    book = steps.get("textbook", {})
    out = {}
    for tag in ("study_default", "study_250"):
        s = steps.get(tag, {})
        for basis in ("train", "wall"):
            key = f"models_per_second_{basis}"
            if s.get(key) and book.get(key):
                out[f"{tag}_over_textbook_{basis}"] = round(s[key] / book[key], 2)
    return out


def git_state() -> Optional[dict]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode:
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def summary(report: dict) -> str:
    env = report["steps"].get("env", {})
    mem_key = "gpu_peak_allocated_mib" if report["device"].startswith("cuda") else "rss_peak_mib"
    lines = [f"{env.get('gpu_name') or report['device']}, torch {env.get('torch')}, CUDA "
             f"{env.get('torch_cuda')}; {report['train_images']:,} training images; total "
             f"{report['total_wall_seconds']} s; {'OK' if report['ok'] else 'NOT OK'}",
             "",
             f"| step | status | wall s | models | models/s (train) | models/s (wall) | peak MiB "
             f"({mem_key.replace('_mib', '')}) | test acc % by init |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in report["steps"].items():
        if name == "env":
            continue
        if name == "tests":
            detail = (f"{s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
                      f"{s.get('errors', 0)} errors, {s.get('skipped', 0)} skipped")
            lines.append(f"| tests | {s.get('status')} | {s.get('wall_seconds', '')} | | | | | {detail} |")
            continue
        acc = s.get("test_acc") or {}
        acc_text = ", ".join(f"{k} {100 * (v['mean'] if isinstance(v, dict) else v):.2f}"
                             for k, v in acc.items())
        mem = s.get(mem_key)
        lines.append(f"| {name} | {s.get('status')} | {s.get('wall_seconds', '')} | "
                     f"{s.get('models', '')} | {s.get('models_per_second_train', '')} | "
                     f"{s.get('models_per_second_wall', '')} | "
                     f"{'' if mem is None else f'{mem:.0f}'} | {acc_text} |")
    for name, s in report["steps"].items():
        if s.get("phases"):
            lines.append(f"{name} seconds by phase (nested): " + ", ".join(
                f"{k.split(':')[1]} {v['seconds']:.1f} ({v['calls']}x)" for k, v in s["phases"].items()
                if v["calls"]))
    if report["comparison"]:
        lines.append("")
        lines.append("engine over textbook (models/s): " + ", ".join(
            f"{k} {v}x" for k, v in report["comparison"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--quick", action="store_true",
                    help="2,000 training images, 1 and 2 seeds: the whole script in minutes on a CPU")
    ap.add_argument("--data-dir", default=None,
                    help="folder with the four MNIST IDX files (default .gpucarry/mnist when present, "
                         "else initlab's cache and sources)")
    ap.add_argument("--out", default=None, help="the JSON file (default $OUT/gpu_check.json, else "
                    "runs/gpu_check/gpu_check.json); the log and runs.csv files go beside it")
    ap.add_argument("--budget", type=float, default=440.0,
                    help="seconds for all steps together (default 440); each step also has a cap")
    ap.add_argument("--seeds", type=int, default=None, help="seeds of the default study (3; quick: 1)")
    ap.add_argument("--seeds-large", type=int, default=None,
                    help="seeds of the large study (50 = 250 models; quick: 2)")
    ap.add_argument("--images", type=int, default=None,
                    help="training images (60,000; quick: 2,000)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["tests", "study_default", "textbook",
                                                              "study_250"])
    ap.add_argument("--work-dir", default=None, help="where the studies write (default a temp dir)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work dir (study folders)")
    ap.add_argument("--child", choices=["env", "study", "textbook"], help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.images = args.images or (2000 if args.quick else 60000)
    if args.child:
        return run_child(args)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.seeds_large = args.seeds_large or (2 if args.quick else 50)
    if args.data_dir is None and (ROOT / ".gpucarry" / "mnist").is_dir():
        args.data_dir = str(ROOT / ".gpucarry" / "mnist")
    if args.out is None:
        base = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "runs" / "gpu_check"
        args.out = str(base / "gpu_check.json")
    return Driver(args).run()


if __name__ == "__main__":
    sys.exit(main())
