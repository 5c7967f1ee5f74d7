"""The study report's sentences: the answers to the lab's two questions, each computed from the records."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Dict, List, Tuple

import torch

from initlab.activations import ACTIVATIONS
from initlab.data import DATASETS
from initlab.document import mean, pct
from initlab.experiments.study_files import StudyFiles, by_init, layer_at, layer_max_over_run, layer_names, summary_rows
from initlab.seeds import count

LN10 = math.log(10)  # cross-entropy of a uniform guess over 10 classes


def _fmt(x: float) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.1e}"


def _final_train_loss(f: StudyFiles, init: str) -> str:
    """', and its running training loss was still X at the end (vs Y for the best init)' or ''."""
    last = {}
    for r in f.curves:
        if r["train_loss"] is not None and not math.isnan(r["train_loss"]):
            key = (r["init"], r["seed"])
            if key not in last or r["step"] > last[key]["step"]:
                last[key] = r
    ends = defaultdict(list)
    for (name, _), r in last.items():
        ends[name].append(r["train_loss"])
    if init not in ends:
        return ""
    best = min(ends, key=lambda n: mean(ends[n]))
    return (f"; its running training loss was still {_fmt(mean(ends[init]))} at the end of training "
            f"(best: {best}, {_fmt(mean(ends[best]))})")


def _diverged(rows) -> str:
    """' (k of n runs diverged: left out)' for the summary rows with a diverged run, or ''."""
    parts = [f"{r['init']} {r['acc'].diverged} of {r['acc'].runs}" for r in rows if r["acc"].diverged]
    return f" ({'; '.join(parts)} runs diverged: left out)" if parts else ""


# The lab's two questions: the report's headings, and the keys of ``observations``.
QUESTIONS = {"speed": "Why do better-scaled initializations train faster?",
             "zeros": "Why do all-zero weights stop learning?"}


def observations(f: StudyFiles) -> Dict[str, List[str]]:
    """{"speed": [...], "zeros": [...]}: sentences answering the lab's two questions (``QUESTIONS``)."""
    summary = {r["init"]: r for r in summary_rows(f)}
    layers = layer_names(f)
    hidden = [l for l in layers if l != layers[-1]] if layers else []
    speed: List[str] = []
    zeros: List[str] = []
    if not summary:
        return {"speed": speed, "zeros": zeros}

    # -- which inits trained fastest
    reach = sorted(((r["steps_to_97"], name) for name, r in summary.items() if r["steps_to_97"] is not None))
    never = [name for name, r in summary.items() if r["steps_to_97"] is None]
    if reach:
        parts = [f"{name} ({s:,.0f} steps)" for s, name in reach]
        sentence = "Held-out accuracy reached 97 % fastest with " + ", then ".join(parts)
        sentence += " (mean over seeds)"
        if never:
            sentence += "; " + ", ".join(never) + " never reached 97 % on every seed"
        speed.append(sentence + ".")
    scored = [r for r in summary.values() if r["acc"].values]
    if len(summary) > 1 and scored:
        best = max(scored, key=lambda r: r["acc_mean"])
        worst = min(scored, key=lambda r: r["acc_mean"])
        ok = best["acc"].n
        spread = f", min over {ok} seeds {pct(best['acc_min'])}" if ok > 1 else ", 1 seed"
        speed.append(f"Final test accuracy ranges from {pct(worst['acc_mean'])} ({worst['init']}) to "
                     f"{pct(best['acc_mean'])} ({best['init']}{spread})" + _diverged(summary.values()) + ".")

    # -- signal scale at init: activation std from the first to the last hidden layer
    scale = {}
    for name in summary:
        stds = layer_at(f, name, "first", "act_std")
        if hidden and all(not math.isnan(stds.get(l, math.nan)) for l in (hidden[0], hidden[-1])):
            scale[name] = (stds[hidden[0]], stds[hidden[-1]], stds.get(layers[-1], math.nan))
    if scale:
        def kind(first, last):
            if last == 0 or first == 0:
                return "no variation: every image gives the same outputs"
            ratio = last / first
            return "grows" if ratio > 4 else "shrinks" if ratio < 0.25 else "stays within 4x"
        parts = [f"{name}: {_fmt(a)} at {hidden[0]} -> {_fmt(b)} at {hidden[-1]} ({kind(a, b)})"
                 for name, (a, b, _) in scale.items()]
        speed.append("Activation std on the probe batch at initialization, first to last hidden layer — "
                     + "; ".join(parts) + ".")
        logit = {name: v[2] for name, v in scale.items() if not math.isnan(v[2])}
        loss = {name: r["initial_loss"] for name, r in summary.items()}
        hi = max(logit, key=logit.get) if logit else None
        if hi is not None and loss.get(hi, math.nan) > 1.5 * LN10:
            speed.append(
                f"{hi} starts with logits of std {_fmt(logit[hi])} and an initial held-out loss of "
                f"{_fmt(loss[hi])}, {loss[hi] / LN10:.1f}x the {LN10:.3f} of a uniform guess: the "
                f"network is confidently wrong, its softmax saturated"
                + _final_train_loss(f, hi) + ".")
        calm = [name for name, (a, b, _) in scale.items() if kind(a, b) == "stays within 4x"]
        if calm and reach:
            fastest = reach[0][1]
            verdict = "one of them" if fastest in calm else "not one of them"
            speed.append(
                f"Inits whose signal stays within 4x from {hidden[0]} to {hidden[-1]}: "
                f"{', '.join(calm)}; the fastest init to 97 % ({fastest}) is {verdict}. A scale that "
                f"keeps each layer's output variance near its input's (Var(w) = 2/fan_in for ReLU) lets "
                f"every layer receive a useful gradient from the first step.")
    grads = {name: layer_at(f, name, "first", "grad_norm") for name in summary}
    if hidden and len(grads) > 1:
        first_layer = hidden[0]
        vals = {n: g.get(first_layer, math.nan) for n, g in grads.items()}
        vals = {n: v for n, v in vals.items() if not math.isnan(v)}
        if vals:
            parts = [f"{n} {_fmt(v)}" for n, v in sorted(vals.items(), key=lambda kv: -kv[1])]
            speed.append(f"Gradient norm reaching {first_layer} at step 0: " + ", ".join(parts) + ".")

    # -- why all-zero weights stop learning
    for name in summary:
        if not name.startswith("zeros") and not name.startswith("constant"):
            continue
        r = summary[name]
        share = f.meta.get("majority_share", math.nan)
        label = f.meta.get("majority_label", -1)
        pinned = not math.isnan(share) and abs(r["acc_mean"] - share) < 0.005
        dataset = f.config.get("dataset", "mnist")
        classes = DATASETS.get(dataset).classes if dataset in DATASETS else ()
        thing = "digit" if dataset == "mnist" else "class"
        balanced = len(classes) > 0 and not math.isnan(share) and round(share * len(classes), 3) == 1
        if balanced:
            thing = f"class (all {len(classes)} equally common)"
        label_name = classes[label] if 0 <= label < len(classes) and dataset != "mnist" else label
        ok = r["acc"].n
        spread = ("no test accuracy (every seed diverged)" if not ok else
                  f"{pct(r['acc_min'])} test accuracy (1 seed)" if ok == 1 else
                  f"{pct(r['acc_min'])} test accuracy on all {ok} seeds" if r["acc_min"] == r["acc_max"]
                  else f"{pct(r['acc_min'])}–{pct(r['acc_max'])} test accuracy over {ok} seeds")
        spread += _diverged([r])
        s = f"{name} ended at {spread}"
        if pinned:
            s += (f", which is the share of the most common test {thing} ({label_name}: {pct(share)}): "
                  f"it predicts that one class for every image")
        elif not math.isnan(share):
            s += f" (the most common test {thing}, {label_name}, is {pct(share)} of the test set)"
        zeros.append(s + ".")
        wmax = {l: max(abs(v) for v in (layer_at(f, name, "last", "w_min")[l],
                                         layer_at(f, name, "last", "w_max")[l])) for l in layers}
        stuck = [l for l in layers if wmax[l] == 0]
        moved = [l for l in layers if wmax[l] != 0]
        if stuck:
            zeros.append(f"After {max(rr['steps'] for rr in by_init(f.runs)[name]):,} steps the weights of "
                         f"{', '.join(stuck)} are still exactly 0 (largest |w| = 0)"
                         + (f"; only {', '.join(moved)} moved (largest |w| "
                            + ", ".join(f"{_fmt(wmax[l])}" for l in moved) + ")" if moved else "") + ".")
        gmax = layer_max_over_run(f, name, "grad_norm")
        zero_grad = [l for l in hidden if gmax.get(l) == 0 and l in stuck]   # (moved: it had a gradient)
        if zero_grad:
            zeros.append(f"The gradient norm of {', '.join(zero_grad)} was 0 at every record point: a "
                         f"weight's gradient is its input times the gradient from above, and with the "
                         f"weights above all 0 the gradient from above is 0{_constant_units(f)}, so Adam "
                         f"has nothing to follow"
                         + ("; the output bias alone learns the class prior." if "output" in stuck else "."))
        distinct = layer_at(f, name, "last", "distinct_units")
        same = [l for l in hidden if distinct.get(l) == 1]
        if same:
            split = [l for l in hidden if distinct.get(l, 1) > 1]
            zeros.append(f"Distinct units of {name} at the end: " + ", ".join(
                f"{l} {distinct[l]:.0f}" for l in layers) + ". Units that start identical receive "
                "identical gradients and stay identical: " + (
                    "no hidden layer's symmetry is ever broken"
                    + (f" (the {distinct[layers[-1]]:.0f} output units differ: each logit has its own "
                       "target)." if distinct.get(layers[-1], 1) > 1 else ".") if not split else
                    f"{', '.join(same)} kept a single unit; {', '.join(split)} split into a few only "
                    "through floating-point rounding -- the symmetry is not broken by learning.")
                + ("" if any(n.startswith("constant") for n in summary) else
                   " (--inits constant:value=c measures what a nonzero constant does.)"))
        order = first_moves(f, name)
        if order:
            zeros.append(moves_sentence(name, order, layers))
    for name in summary:
        if not name.startswith("zero_one"):
            continue
        start = layer_at(f, name, "first", "distinct_units")
        end = layer_at(f, name, "last", "distinct_units")
        grew = [l for l in layers if end.get(l, 0) > start.get(l, 0)]
        zeros.append(f"{name} (ZerO) is deterministic too, yet ended at {pct(summary[name]['acc_mean'])} "
                     "test accuracy (mean over seeds). Distinct units at step 0: "
                     + ", ".join(f"{l} {start[l]:.0f}" for l in layers if l in start) + "; at the end: "
                     + ", ".join(f"{l} {end[l]:.0f}" for l in layers if l in end)
                     + (f". Units of {', '.join(grew)} that started equal came apart: the Hadamard "
                        "signs give them different weights above, hence different gradients -- structure "
                        "breaks the symmetry that chance breaks for the random inits." if grew else "."))
    speed += model_level_sentences(f)
    return {"speed": speed, "zeros": zeros}


def model_level_sentences(f: StudyFiles) -> List[str]:
    """What the data-dependent inits did before training, from runs.csv's init_info: the DBN's
    pre-training time and each RBM's reconstruction error, LSUV's rescaling."""
    out = []
    for init, runs in by_init(f.runs).items():
        infos = []
        for r in runs:
            try:
                infos.append(json.loads(r.get("init_info") or "{}"))
            except (TypeError, ValueError):
                continue
        dbn = [i for i in infos if "pretrain_seconds" in i]
        if dbn:
            layers = dbn[0].get("rbm", [])
            errors = "; ".join(f"{x['layer']} {x['recon_error_start']:.3g} -> {x['recon_error_end']:.3g}"
                               for x in layers if "layer" in x)
            out.append(f"{init} pre-trained {len(layers)} RBM(s) before training, "
                       f"{mean([i['pretrain_seconds'] for i in dbn]):.1f} s per run (mean over "
                       f"{count(len(dbn), 'seed')}; init time, not part of 's / model')"
                       + (f"; reconstruction error per visible unit, first seed, before -> after: {errors}"
                          if errors else "") + ".")
        lsuv = [i for i in infos if "lsuv_var" in i]
        if lsuv:
            var = lsuv[0]["lsuv_var"]
            iters = lsuv[0].get("lsuv_iters", {})
            out.append(f"{init} rescaled each layer until its output variance was near 1 on one batch (first "
                       f"seed): " + ", ".join(f"{layer} {v:.3f} after {iters.get(layer, '?')} rescale(s)"
                                               for layer, v in var.items()) + ".")
    return out


def _constant_units(f: StudyFiles) -> str:
    """'; every hidden unit outputs relu(0) = 0 for every image' for the study's activation and
    constant bias (nothing for a random bias: its units differ)."""
    b = f.config.get("bias_init", 0.0)
    name = f.config.get("activation", "relu")
    if not isinstance(b, (int, float)) or name not in ACTIVATIONS:
        return ""
    value = float(ACTIVATIONS.get(name).fn(torch.tensor(float(b))))
    return f"; every hidden unit outputs {name}({b:g}) = {value:.4g} for every image"


def moves_sentence(name: str, order: List[Tuple[str, int]], layers: List[str]) -> str:
    """Which layers' weights left 0 at which record step, and whether that went from the top down."""
    steps: Dict[int, List[str]] = defaultdict(list)
    for layer, step in order:
        steps[step].append(layer)
    text = "; ".join(f"{', '.join(ls)} at step {s:,}" for s, ls in sorted(steps.items()))
    s = f"{name}: the weights left 0 -- {text} (first record point with a nonzero weight, first seed)"
    if len(steps) == 1:
        return s + ("; every layer moved between two record points: --record-every 4 resolves the first "
                    "steps one by one.")
    depth = {l: k for k, l in enumerate(layers)}
    top_down = all(depth[a] >= depth[b] for (a, sa), (b, sb) in zip(order, order[1:]) if sa < sb)
    return s + ("; learning works down from the top: a layer's weight gradient is its input times the "
                "gradient from above, which is 0 until the layers above have moved." if top_down else
                "; the order is not top-down.")


def first_moves(f: StudyFiles, init: str) -> List[Tuple[str, int]]:
    """For a run whose weights all start at exactly 0: (layer, first record step with a nonzero
    weight), in the order the layers moved (the first seed's run; [] when a weight started nonzero)."""
    rows = [r for r in f.layers if r["init"] == init]
    if not rows:
        return []
    run = min(r["run"] for r in rows if r["seed"] == min(rr["seed"] for rr in rows))
    rows = sorted((r for r in rows if r["run"] == run), key=lambda r: r["step"])
    first_step = rows[0]["step"]
    if any(max(abs(r["w_min"]), abs(r["w_max"])) != 0 for r in rows if r["step"] == first_step):
        return []
    moved: Dict[str, int] = {}
    for r in rows:
        if r["layer"] not in moved and max(abs(r["w_min"]), abs(r["w_max"])) != 0:
            moved[r["layer"]] = r["step"]
    return sorted(moved.items(), key=lambda kv: kv[1])
