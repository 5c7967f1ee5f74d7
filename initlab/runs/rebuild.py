"""Rebuilding: a study or sweep folder's tables (runs.csv, curves.csv, layers.csv, histograms.csv) and
reports, from the run store and the record files alone.

The tables are always rebuilt, never appended to, so ``initlab report DIR`` works on a sweep folder as
on a study folder, and a resume after ``kill -9`` gives the tables a run without one would. A sweep
that varies more than init and seed also gets one study folder per setting combination under
DIR/groups/, and an index report linking their reports.
"""
from __future__ import annotations

import copy
import html
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from initlab import files
from initlab.document import html_table, md_table
from initlab.experiments import study_report as report
from initlab.experiments import study_tables
from initlab.files import atomic_write_text
from initlab.runs import store as st
from initlab.runs.cells import flatten, settings_of, slug, variant, varied_settings


def assemble(out: Path, runs: Sequence[dict], label: Callable[[dict], str] = lambda r: r["init"],
             extra: Callable[[dict], dict] = lambda r: {}) -> Dict[str, List[dict]]:
    """runs / curves / layers / histograms tables of finished store rows (numbered in plan order), their
    record files read from ``out`` (:func:`initlab.experiments.study_tables.assemble_tables`)."""
    return study_tables.assemble_tables([{**r, "tables": st.read_records(out, r["records"])} for r in runs],
                                 label, extra)


def group_config(runs: Sequence[dict], options: dict) -> dict:
    """config.json of a set of cells that share their settings: StudyConfig's fields, the inits in
    plan order and the seeds they cover."""
    settings = copy.deepcopy(settings_of(runs[0]["config"]))
    inits = list(dict.fromkeys(r["init"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    return {"inits": inits, "seeds": len(seeds), "first_seed": seeds[0], **settings,
            "data_dir": options.get("data_dir"), "device": options.get("device", "auto"),
            "seeds_per_stack": options.get("seeds_per_stack", 0), "seed_list": seeds}


def _write_folder(folder: Path, config: dict, meta: dict, tables: Dict[str, List[dict]]) -> None:
    files.write_result(folder, "study", config,
                       {name: tables[name] for name in ("curves", "layers", "histograms", "runs")}, meta)


def rebuild(out: Path) -> dict:
    """Rewrite DIR's tables (and, for a sweep that varies more than init and seed, one study folder
    per setting combination under DIR/groups/) from the store and the record files. Returns
    {"kind", "varied", "groups": [(variant, folder, finished runs)], "counts", "interrupted",
    "finished", "corrupt": [one line per run whose record files failed their checksums: set to
    failed, left out of the tables, trained again by a resume]}."""
    out = Path(out)
    with st.Store(out) as store:
        corrupt = store.requeue_corrupt(out)
        plan = store.meta("plan", {})
        env = store.meta("environment", {})
        runs = store.runs()
        counts = store.counts()
        majority = store.meta_with_prefix("majority:")     # {dataset: [share, label]}
    options = plan.get("options", {})
    finished = [r for r in runs if r["status"] in st.HAS_RECORDS and r["row"] and r["records"]]
    incomplete = any(r["status"] not in st.FINAL and r["status"] != "failed" for r in runs)
    failed = [f"{r['init']} seed {r['seed']}: {r.get('error') or 'failed'}" for r in runs if r["status"] == "failed"]
    varied = varied_settings([r["config"] for r in runs])
    finished_hashes = {r["hash"] for r in finished}

    def meta_for(rs) -> dict:
        share, label = majority.get(rs[0]["config"]["dataset"] if rs else None, [float("nan"), -1])
        return {"environment": env, "interrupted": incomplete, "failed": failed, "majority_share": share,
                "majority_label": label,
                "store": {"file": st.STORE_NAME, "status": counts, **plan.get("execution", {})}}

    info = {"kind": plan.get("kind", "sweep"), "varied": varied, "groups": [], "counts": counts,
            "interrupted": incomplete, "finished": len(finished), "corrupt": corrupt}
    if not varied:
        config = plan["study"] if plan.get("kind") == "study" and "study" in plan else \
            (group_config(finished or runs, options) if runs else {})
        _write_folder(out, config, meta_for(finished), assemble(out, finished))
        return info
    # a sweep over more than init and seed: the top folder labels each run "init k=v ..."
    label = lambda r: f"{r['init']} {variant(r['config'], varied)}"
    extra = lambda r: {"spec": r["init"], **{k: flatten(settings_of(r["config"])).get(k) for k in varied
                                             if k not in r["row"]}}
    config = {"sweep": {"varied": varied, "cells": len(runs), "finished": len(finished)},
              "inits": [label(r) for r in dict((label(r), r) for r in runs).values()],
              **{k: v for k, v in group_config(runs, options).items() if k != "inits"}}
    for key in varied:                   # a varied setting has no single value at the top
        config.pop(key, None)
        config.get("train", {}).pop(key, None)
    _write_folder(out, config, meta_for(finished), assemble(out, finished, label, extra))
    groups: Dict[str, List[dict]] = {}
    for r in runs:
        groups.setdefault(r["grp"], []).append(r)
    for rs in groups.values():
        name = variant(rs[0]["config"], varied)
        done = [r for r in rs if r["hash"] in finished_hashes]
        folder = out / "groups" / slug(name)
        if done:
            _write_folder(folder, group_config(rs, options), meta_for(done), assemble(out, done))
        info["groups"].append((name, folder, len(done)))
    current = {folder.name for _, folder, n in info["groups"] if n}
    for folder in (out / "groups").glob("*"):       # groups of an earlier plan (still in the store)
        if folder.name not in current and (folder / "config.json").exists():
            shutil.rmtree(folder)
    return info


def write_reports(out: Path, info: dict, title: Optional[str] = "initlab sweep") -> Path:
    """report.md / report.html for DIR: the study report, or for a varied sweep one study report per
    group plus an index with every group's summary. Returns the top HTML path."""
    out = Path(out)
    if not info["varied"]:
        return report.write_report(out, title=title)
    links = []
    for name, folder, n in info["groups"]:
        if n:
            report.write_report(folder, title=f"{title}: {name}")
            links.append((name, folder.relative_to(out)))
    head, body = report.summary_table(report.load(out))
    varied = ", ".join(f"{k} in {v}" for k, v in info["varied"].items())
    note = " (incomplete: only the finished runs)" if info["interrupted"] else ""
    md = [f"# {title}{note}", "", f"Varied: {varied}. {info['finished']} finished runs; counts by status: "
          f"{info['counts']}.", "", "## Results", "", md_table(head, body), "", "## Groups", ""]
    md += [f"- [{name}]({rel / 'report.md'})" for name, rel in links] + [""]
    atomic_write_text(out / "report.md", "\n".join(md))
    parts = [f"<h1>{html.escape(title + note)}</h1>", f"<p>Varied: {html.escape(varied)}.</p>",
             "<h2>Results</h2>", html_table(head, body), "<h2>Groups</h2><ul>"]
    parts += [f"<li><a href='{html.escape(str(rel / 'report.html'))}'>{html.escape(name)}</a></li>"
              for name, rel in links]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"</head><body>{''.join(parts)}</ul></body></html>")
    atomic_write_text(out / "report.html", page)
    return out / "report.html"

