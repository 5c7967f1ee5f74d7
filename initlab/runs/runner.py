"""The one runner: an experiment's cells planned into the run store and trained through a backend.

Every experiment that trains (study, sweep, grid, depth) hands its cells here; this module decides
*how* they train -- in this process, on local worker processes or as Ray tasks -- and owns what every
experiment gets from that for free: resume (only the cells the store lacks are trained), one progress
bar, Ctrl-C (the stack that was training is kept as ``interrupted``, the rest back to ``queued``) and
failures (a stack that raises is marked ``failed``; the others go on). An experiment describes *what*
to run: its ``plan(cfg)`` gives study configs, one per group of cells that share all but init and
seed (``initlab.experiments.catalog``), and its ``collect`` turns the finished runs into its tables.

Stages: a study config whose ``start`` is ``group:K`` (the K-th config of the same plan; ``cells.linked``
writes it as that group's hash) has runs that start from the weights the run of the same seed in group
K left (its ``keep_weights``). The runner trains such runs after those (:func:`train_in_stages`), loads
the weights into the task it hands to a backend (so a Ray node needs no shared folder), and a resume
skips every finished run, of any stage: transfer's pretraining is such a group.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from initlab import files
from initlab.engine.pool import cores
from initlab.experiments import study, study_tables
from initlab.experiments.catalog import EXPERIMENTS
from initlab.options import UsageError, flag
from initlab.runs import backends
from initlab.runs import store as st
from initlab.runs.cells import cells_of, linked, start_group, varied_settings
from initlab.runs.plan import Task, plan_tasks, split_tasks
from initlab.runs.rebuild import rebuild
from initlab.runs.study_store import new_session, open_out, train_sizes


@dataclass
class Execution:
    """How cells train (never what they compute: none of this is part of a cell's hash)."""
    workers: int = 0                 # local worker processes; 0 = one per core on the CPU, 1 on a GPU
    threads: Optional[int] = None    # torch threads per worker (None: cores // workers)
    backend: str = "local"           # local | ray
    address: Optional[str] = None    # a Ray cluster to join (None: a local Ray instance)
    tensorboard: bool = False        # also write TensorBoard event files to OUT/tb
    progress: bool = True            # one progress bar on stderr
    extend: bool = False             # a resume with other settings adds their runs to the stored plan


@dataclass
class Outcome:
    """What one call of the runner did."""
    interrupted: bool = False                             # Ctrl-C stopped it
    failed: List[str] = field(default_factory=list)       # one line per stack that failed
    counts: Dict[str, int] = field(default_factory=dict)  # {status: runs} over the plan, afterwards
    info: dict = field(default_factory=dict)              # the study's rebuild (initlab.runs.rebuild)


def progress_bar(total: int, desc: str, show: bool) -> tqdm:
    """The one progress bar of a training command: model-steps, quiet when not on a terminal."""
    return tqdm(total=total, unit=" model-steps", unit_scale=True, dynamic_ncols=True, desc=desc,
                disable=not show, mininterval=0.2 if sys.stderr.isatty() else 15.0)


def unique_cells(configs: Sequence[study.StudyConfig]) -> List[dict]:
    """The cells of several study configs, in order, each once."""
    return list({c["hash"]: c for cfg in configs for c in cells_of(cfg)}.values())


def train(out: Path, store: st.Store, pending: Sequence[dict], options: dict, execution: Execution,
          desc: str, per_stack: int = 0, workers: Optional[int] = None, varied=None) -> Outcome:
    """Train the ``pending`` store rows of ``out``'s plan: grouped into stacks of at most ``per_stack``
    seeds (0: all), split so that every worker has work, on ``execution``'s backend. Ctrl-C is caught:
    the outcome says so."""
    n_workers = workers or study.processes(execution.workers, len(pending),
                                           study.resolve_device(options.get("device", "auto")))
    threads = execution.threads or max(1, cores() // n_workers)
    sizes = train_sizes(pending, options, required=execution.backend == "local")
    tasks: List[Task] = plan_tasks(pending, options, per_stack, sizes, execution.tensorboard, varied)
    if any(t.cfg.start is not None for t in tasks):     # runs that start from weights: loaded here, once
        runs, loaded = store.runs(), {}
        for t in tasks:
            t.starts = backends.load_starts(out, runs, t, loaded)
    if execution.backend == "local":
        tasks = split_tasks(tasks, n_workers)
    where = ("" if execution.backend == "local" and n_workers == 1 and execution.threads is None else
             f", {min(n_workers, max(1, len(tasks)))} workers" if execution.backend == "local"
             else f", ray ({execution.address or 'local'})")
    bar = progress_bar(sum(t.steps * t.size for t in tasks), f"{desc}: {sum(t.size for t in tasks)} runs"
                       f"{where}", execution.progress)
    outcome = Outcome()

    def on_done(task, counts, error):
        if error:
            line = f"{', '.join(task.cfg.inits)} seeds {task.cfg.seed_list}: {error}"
            outcome.failed.append(line)
            bar.write(f"initlab: failed: {line}", file=sys.stderr)

    session = new_session()
    try:
        if not tasks:
            pass
        elif execution.backend == "ray":
            backends.run_ray(out, store, tasks, session, bar.update, on_done, threads, execution.address,
                             execution.tensorboard)
        elif n_workers == 1 and execution.threads is None:     # (one worker with its threads named: a process)
            outcome.interrupted = backends.run_inline(out, store, tasks, session, bar.update, on_done,
                                                      execution.tensorboard)
        else:
            outcome.interrupted = backends.run_local(out, store, tasks, session, bar.update, on_done,
                                                     n_workers, threads, execution.tensorboard)
    except KeyboardInterrupt:
        store.release(session)
        outcome.interrupted = True
    bar.close()
    outcome.counts = store.counts()
    return outcome


def stages(runs: Sequence[dict]) -> Dict[str, int]:
    """{hash: stage} of a plan's runs: 0 for a run that starts from no other run's weights, else one
    more than the stage of the group its config's ``start`` names (``cell:<group hash>``)."""
    start = {r["grp"]: start_group(r["config"].get("start")) for r in runs}

    def depth(grp: Optional[str]) -> int:      # (cells.linked: a start is always an earlier group)
        return 0 if grp is None else 1 + depth(start.get(grp))
    return {r["hash"]: depth(start[r["grp"]]) for r in runs}


def train_in_stages(out: Path, store: st.Store, options: dict, execution: Execution, desc: str,
                    per_stack: int = 0) -> Outcome:
    """Train the unfinished runs of ``out``'s plan stage by stage (:func:`stages`): a run that starts
    from another run's weights trains once that run is finished (done or diverged); one whose start
    failed, or was not trained, stays queued (a resume trains it after its start). Ctrl-C stops at the
    stage it lands in. A plan without starts is one stage: :func:`train` on every unfinished run."""
    plan = store.runs()
    stage = stages(plan)
    varied = varied_settings([r["config"] for r in plan])   # TensorBoard folders: variant/init/seedK
    outcome = Outcome()
    for k in sorted(set(stage.values())):
        runs = store.runs()
        final = {(r["grp"], r["seed"]) for r in runs if r["status"] in st.FINAL}
        pending = [r for r in runs if stage[r["hash"]] == k and r["status"] not in st.FINAL
                   and (start_group(r["config"].get("start")) is None
                        or (start_group(r["config"]["start"]), r["seed"]) in final)]
        if not pending:
            continue
        try:
            done = train(out, store, pending, options, execution, desc, per_stack=per_stack, varied=varied)
        except KeyboardInterrupt:        # between stacks (loading data or weights): nothing was claimed
            outcome.interrupted = True
            break
        outcome.failed += done.failed
        if done.interrupted:
            outcome.interrupted = True
            break
    outcome.counts = store.counts()
    return outcome


IGNORED_IN_DIFF = ("workers", "data_dir", "device", "seed_list", "seeds_per_stack")   # how, not what


def _flat(d: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(old: dict, new: dict) -> List[str]:
    """'lr 0.001 -> 0.003' for every setting (nested ones by their leaf name) that differs."""
    a, b = _flat(old), _flat(new)
    return [f"{key.rpartition('.')[2]} {a[key]} -> {b[key]}" for key in a   # (a setting newer than
            if key in b and key.rpartition(".")[2] not in IGNORED_IN_DIFF and a[key] != b[key]]  # the folder: no)


def resume_cells(store: st.Store, cells: List[dict], old_config: Optional[dict], new_config: dict,
                 extend: bool, name: str, union: bool = True) -> List[dict]:
    """The cells to plan when ``store`` holds a plan already: the new ones when they are the stored
    plan's; else, with ``extend``, the stored plan's cells and the new ones beside them (``union``
    False: only where the new plan holds every stored cell, for experiments whose tables follow their
    config); else a UsageError naming the settings that changed. Never a silent replace."""
    stored = store.runs()
    old = {r["hash"] for r in stored}
    new = {c["hash"] for c in cells}
    if not stored or old == new:
        return cells
    changes = changed_settings(old_config or {}, new_config) or [f"{len(new - old)} other runs"]
    what = ", ".join(changes[:6]) + (" ..." if len(changes) > 6 else "")
    if not extend:
        raise UsageError(f"{flag('resume')} with settings other than {store.out}'s plan ({what}); drop them to "
                         f"continue the plan, add {flag('extend', True)} to train the new runs beside the stored ones, "
                         f"or use another {flag('out')}")
    if not union and not old <= new:
        raise UsageError(f"{flag('extend')} adds runs, but these settings ({what}) would leave {len(old - new)} "
                         f"stored runs out of the {name}'s tables; use another {flag('out')}")
    kept = [{**r, "config": st.canonical_json(r["config"])} for r in stored if r["hash"] not in new]
    return kept + cells


def run_study_stored(cfg, out: Path, dataset=None, progress: bool = True, resume: bool = False,
                     force: bool = False, tensorboard: bool = False, title: str = "initlab study",
                     execution: Optional[Execution] = None) -> Outcome:
    """``initlab study`` through the store: train the study's missing cells in stacks of
    ``seeds_per_stack`` seeds (split further until each worker has one; one worker trains in this
    process), then rebuild the tables from the store. The outcome's ``info`` is ``rebuild``'s."""
    out = Path(out)
    execution = execution or Execution(workers=cfg.workers, tensorboard=tensorboard, progress=progress)
    open_out(out, resume, force)
    if dataset is not None:
        backends.keep_dataset(cfg.dataset, cfg.data_dir, dataset)
    cells = cells_of(cfg)
    options = {"data_dir": cfg.data_dir, "device": cfg.device, "seeds_per_stack": cfg.seeds_per_stack}
    workers = study.processes(execution.workers, len(cells), study.resolve_device(cfg.device))
    threads = execution.threads or max(1, cores() // workers)
    with st.Store(out) as store:
        if resume:
            cells = resume_cells(store, cells, store.meta("plan", {}).get("study"), study_tables.config_dict(cfg),
                                 execution.extend, "study")
        store.plan(cells, plan={"kind": "study", "title": title, "study": study_tables.config_dict(cfg),
                                "options": options,
                                "execution": {"backend": "inline" if workers == 1 else execution.backend,
                                              "workers": workers, "address": execution.address}},
                   environment={**files.environment(), **({"cpu_threads": threads} if workers > 1 else {})})
        store.requeue_corrupt(out)        # a finished run whose records were damaged trains again
        pending = [r for r in store.runs() if r["status"] not in st.FINAL]
        outcome = train(out, store, pending, options, execution,
                        f"study {len(cfg.inits)} inits x {cfg.seeds} seeds",
                        per_stack=cfg.seeds_per_stack or len(cfg.seed_list), workers=workers)
    outcome.info = rebuild(out)
    return outcome


def run_experiment(name: str, cfg, out: Path, execution: Execution, resume: bool = False,
                   force: bool = False, dataset=None) -> Outcome:
    """Plan experiment ``name``'s cells for ``cfg`` into ``out``'s store (after its ``prepare``, what it
    computes without training), train what is missing and write its result folder (:func:`collect`).
    ``cfg`` is validated already."""
    exp = EXPERIMENTS[name]
    out = Path(out)
    open_out(out, resume, force)
    groups = linked(exp.plan(cfg))
    first = groups[0]
    if dataset is not None:
        backends.keep_dataset(first.dataset, first.data_dir, dataset)
    if exp.prepare is not None:                 # what it computes without training, before the runs
        exp.prepare(cfg, out, dataset if dataset is not None else backends.dataset(first.dataset, first.data_dir),
                    resume, execution.progress)
    cells = unique_cells(groups)
    options = {"data_dir": first.data_dir, "device": first.device, "seeds_per_stack": first.seeds_per_stack}
    with st.Store(out) as store:
        if store.meta("plan", {}).get("kind") not in (None, name):
            raise UsageError(f"{flag('out', out)} holds a {store.meta('plan')['kind']}, not a {name}")
        if resume:
            cells = resume_cells(store, cells, store.meta("plan", {}).get("config"), exp.to_dict(cfg),
                                 execution.extend, name, union=False)
        store.plan(cells, plan={"kind": name, "config": exp.to_dict(cfg), "options": options,
                                "execution": {"backend": execution.backend, "workers": execution.workers,
                                              "address": execution.address}},
                   environment=files.environment())
        store.requeue_corrupt(out)        # a finished run whose records were damaged trains again
        outcome = train_in_stages(out, store, options, execution, name,
                                  per_stack=first.seeds_per_stack or len(first.seed_list))
    outcome.info = collect(out)
    return outcome


def collect(out: Path) -> dict:
    """Rewrite the result folder of a stored experiment (grid, depth, ...) from its store: config.json,
    meta.json and the experiment's tables from its finished runs only (done or diverged: a run stopped
    part-way is never in a table of results). Each finished run comes to the experiment's ``collect``
    with its record ``tables`` and ``groups``: the indexes of the study configs of the plan that hold
    it. Returns {"counts", "interrupted", "failed", "corrupt", "finished"}."""
    out = Path(out)
    with st.Store(out) as store:
        corrupt = store.requeue_corrupt(out)
        plan = store.meta("plan", {})
        env = store.meta("environment", {})
        runs = store.runs()
        counts = store.counts()
    exp = EXPERIMENTS[plan["kind"]]
    finished = [r for r in runs if r["status"] in st.FINAL and r["row"] is not None]
    groups: Dict[str, List[int]] = {}          # hash -> the plan's study configs that hold the cell
    for k, group in enumerate(linked(exp.plan(exp.from_dict(plan["config"])))):
        for c in cells_of(group):
            groups.setdefault(c["hash"], []).append(k)
    for r in finished:
        r["tables"] = st.read_records(out, r["records"]) if r["records"] else {}
        r["groups"] = groups.get(r["hash"], [])
    unfinished = [r for r in runs if r["status"] not in st.FINAL]
    failed = [f"{r['init']} seed {r['seed']}: {r.get('error') or 'failed'}" for r in runs
              if r["status"] == "failed"]
    tables = exp.collect(plan["config"], finished)
    meta = {"environment": env, "interrupted": bool(unfinished) and len(failed) < len(unfinished),
            "unfinished": len(unfinished), "failed": failed,
            "store": {"file": st.STORE_NAME, "status": counts, **plan.get("execution", {})}}
    files.write_result(out, plan["kind"], plan["config"], tables, meta)
    return {"counts": counts, "interrupted": meta["interrupted"], "failed": failed, "corrupt": corrupt,
            "finished": len(finished)}


def stored_kind(out: Path) -> Optional[str]:
    """The experiment whose plan ``out``'s store holds (None: no store or no plan)."""
    if not st.exists(out):
        return None
    with st.Store(out, readonly=True) as store:
        return store.meta("plan", {}).get("kind")


def stored_config(out: Path, name: str) -> Optional[dict]:
    """The config dict a ``--resume`` of ``name`` in ``out`` starts from (None: nothing stored yet)."""
    if not st.exists(out):
        return None
    with st.Store(out, readonly=True) as store:
        plan = store.meta("plan", {})
    if not plan:
        return None
    if plan.get("kind") != name:
        raise UsageError(f"{flag('out', out)} holds a {plan.get('kind')}; resume it as a {plan.get('kind')} "
                         f"({flag('resume', True)})")
    return plan["config"]

