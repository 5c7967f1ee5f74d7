"""Plans: pending cells grouped into tasks, each one engine stack (a rectangle of seeds x inits).

Cells that share everything but init and seed are trained together as one stack (``study.run_study``
on a sub-config), so a stack is the unit of work a worker takes. ``plan_tasks`` groups a store's
pending cells into stacks of consecutive seeds, ``split_tasks`` cuts them (``balance``) so that
a pool of workers finishes close together.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from initlab.data import DATASETS
from initlab.engine import TrainConfig, steps_for
from initlab.experiments.study import StudyConfig
from initlab.runs.cells import settings_of, tb_name


@dataclass
class Task:
    """One engine stack of cells: the unit of work a worker (or Ray task) takes."""
    tid: int
    cfg: object                          # StudyConfig: the stack's inits and contiguous seed range
    hashes: List[List[str]]              # [seed][init], the cells it trains
    steps: int                           # training steps of each run (x size = the bar's model-steps)
    tb_names: Optional[Dict[str, str]] = None    # hash -> TensorBoard folder under DIR/tb, if asked
    starts: Optional[Dict[int, dict]] = None     # seed -> the weights its ``pretrained`` runs start from
                                                 # (a config with a ``start``; the runner fills it)

    @property
    def flat(self) -> List[str]:
        return [h for row in self.hashes for h in row]

    @property
    def size(self) -> int:
        return len(self.flat)


def balance(shapes: List[Tuple[int, int]], workers: int) -> List[Tuple[int, slice, slice]]:
    """Cut blocks of (S_k seeds x I_k inits) runs into rectangles that ``workers`` processes, each
    taking the next rectangle when it is free, finish close together. Blocks are kept whole when
    handing them out largest first already does that; otherwise the runs are dealt in seed-major
    order into ``workers`` equal shares, and each share's part of a block becomes at most three
    rectangles (a partial seed row, whole rows, a partial row). 3 seeds x 5 inits for 2 workers:
    seed 0 x 5, seed 2 x 5, seed 1 x 3, seed 1 x 2 -- 8 and 7 runs, where halving the inits gave 9
    and 6. Returns (block index, seed slice, init slice), largest first."""
    whole = [(k, slice(0, S), slice(0, I)) for k, (S, I) in enumerate(shapes)]
    sizes = [S * I for S, I in shapes]
    total = sum(sizes)
    if workers <= 1 or not total:
        return whole
    target = -(-total // workers)
    loads = [0] * workers
    for n in sorted(sizes, reverse=True):                    # largest first, to the least loaded
        loads[loads.index(min(loads))] += n
    if max(loads) <= target:
        return sorted(whole, key=lambda p: -sizes[p[0]])
    pieces = []
    start = 0                                                # global index of the block's first run
    for k, (S, I) in enumerate(shapes):
        a = start
        while a < start + S * I:
            b = min(start + S * I, (a // target + 1) * target)   # to the end of this share
            lo, hi = a - start, b - start                        # runs [lo, hi) of block k
            r0, r1 = lo // I, (hi - 1) // I
            if r0 == r1:
                pieces.append((k, slice(r0, r0 + 1), slice(lo % I, (hi - 1) % I + 1)))
            else:
                first = r0 + 1 if lo % I else r0                 # first whole row
                last = r1 if hi % I else r1 + 1                  # one past the last whole row
                if lo % I:
                    pieces.append((k, slice(r0, r0 + 1), slice(lo % I, I)))
                if last > first:
                    pieces.append((k, slice(first, last), slice(0, I)))
                if hi % I:
                    pieces.append((k, slice(r1, r1 + 1), slice(0, hi % I)))
            a = b
        start += S * I
    return sorted(pieces, key=lambda p: -(p[1].stop - p[1].start) * (p[2].stop - p[2].start))


def config_for(settings: dict, inits: Sequence[str], seeds: Sequence[int], options: dict):
    """The StudyConfig that trains ``inits`` x ``seeds`` (contiguous) with ``settings``."""
    s = dict(settings)
    train = s.pop("train", {})
    t_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    c_fields = {f.name for f in dataclasses.fields(StudyConfig)}
    cfg = StudyConfig(**{k: v for k, v in s.items() if k in c_fields},
                      train=TrainConfig(**{k: v for k, v in train.items() if k in t_fields}),
                      inits=list(inits), seeds=len(seeds), first_seed=seeds[0],
                      data_dir=options.get("data_dir"), device=options.get("device", "auto"),
                      seeds_per_stack=0)
    if "workers" in c_fields:
        cfg.workers = 1         # a task is one stack, trained in the process that took it
    return cfg


def split_tasks(tasks: List[Task], workers: int) -> List[Task]:
    """Cut the tasks with ``balance`` so that ``workers`` processes, each taking the next task
    when it is free, finish close together; largest first, renumbered."""
    out = []
    for k, rows, cols in balance([(len(t.hashes), len(t.hashes[0])) for t in tasks], workers):
        t = tasks[k]
        if (rows.stop - rows.start, cols.stop - cols.start) == (len(t.hashes), len(t.hashes[0])):
            out.append(t)
            continue
        cfg = copy.deepcopy(t.cfg)
        seeds = t.cfg.seed_list[rows]
        cfg.inits, cfg.first_seed, cfg.seeds = t.cfg.inits[cols], seeds[0], len(seeds)
        out.append(Task(0, cfg, [row[cols] for row in t.hashes[rows]], t.steps, t.tb_names,
                        None if t.starts is None else {s: t.starts[s] for s in seeds}))
    for k, t in enumerate(out):
        t.tid = k
    return out


def plan_tasks(pending: Sequence[dict], options: dict, per_stack: int,
               train_sizes: Dict[tuple, int], tensorboard: bool = False,
               varied: Optional[Dict[str, list]] = None) -> List[Task]:
    """Group pending cells (store rows: hash, config, init, seed, grp) into stacks: cells of one group
    whose seeds are consecutive and pending for the same inits, at most ``per_stack`` seeds each
    (0 = no limit). ``train_sizes[(dataset, data_dir)]`` is the number of training images."""
    by_group: Dict[str, Dict[int, List[dict]]] = {}
    for c in pending:
        by_group.setdefault(c["grp"], {}).setdefault(c["seed"], []).append(c)
    tasks: List[Task] = []
    for grp, seeds in by_group.items():
        chunks: List[List[List[dict]]] = []
        for seed in sorted(seeds):
            row = seeds[seed]
            last = chunks[-1] if chunks else None
            if (last and last[-1][0]["seed"] == seed - 1
                    and [c["init"] for c in last[-1]] == [c["init"] for c in row]
                    and (per_stack <= 0 or len(last) < per_stack)):
                last.append(row)
            else:
                chunks.append([row])
        for chunk in chunks:
            config = chunk[0][0]["config"]
            cfg = config_for(settings_of(config), [c["init"] for c in chunk[0]],
                             [row[0]["seed"] for row in chunk], options)
            n = cfg.train.train_size or train_sizes.get((cfg.dataset, cfg.data_dir),
                                                        DATASETS.get(cfg.dataset).train_size)
            n = min(n, train_sizes.get((cfg.dataset, cfg.data_dir), n))
            tasks.append(Task(tid=len(tasks), cfg=cfg, hashes=[[c["hash"] for c in row] for row in chunk],
                              steps=steps_for(n, cfg.train),
                              tb_names={c["hash"]: tb_name(c["config"], varied or {})
                                        for row in chunk for c in row} if tensorboard else None))
    return tasks

