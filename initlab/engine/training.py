"""The training engine: many independent models of one architecture trained in one batched computation.

Why: a LeNet-5 step at batch 32 is tiny, so the textbook loop spends its time in per-op overhead and a
per-sample DataLoader. Here the data is one in-memory tensor, and a *stack* of S seeds x I members
(e.g. 3 seeds x 5 inits) is trained at once over stacked parameters; every member of a seed sees that
seed's batches, every seed has its own data order. LeNet-5 stacks run through the hand-written forward
and backward of ``lenet_kernel``; fully connected chains (``mlp``, ``two_layer_fc``) as batched matrix
products (``linear_chain``) with autograd; any other model through ``torch.func.vmap`` (the inner vmap
shares a seed's batch between its members, the outer one gives every seed its own) and autograd. The loss is the
sum of the per-model mean losses, so each model's gradient is exactly its own, and Adam is element-wise,
so one (fused) optimizer over the stacked tensors does exactly what M separate optimizers would.
``train_reference`` is the plain one-model loop the engine is tested against, step for step.

A width parametrization (``initlab.init.parametrization``: μP, NTK) travels with the models it was
applied to: ``model.multipliers`` (forward multipliers, honoured by the model's forward and by the
``linear_chain`` path as ``baddbmm``'s alpha) and ``model.parametrization`` (per-parameter lr
multipliers, which the optimizer applies per group). A model without them (SP) trains exactly as before.

A model whose loss turns non-finite is marked diverged at the next record point; its loss is masked
out of the sum from then on and the others carry on untouched.
"""
from __future__ import annotations

import copy
import ctypes
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from initlab.data import DATASETS
from initlab.engine import lenet_kernel, linear_chain
from initlab.engine import record as rec
from initlab.engine.config import TrainConfig
from initlab.engine.optim import StackOptimizer, make_optimizer
from initlab.engine.threads import ThreadGovernor

# The default standardization, MNIST's pixel mean/std in [0, 1] units (every dataset's own: initlab.data.DATASETS)
MNIST_MEAN, MNIST_STD = DATASETS.get("mnist").mean[0], DATASETS.get("mnist").std[0]




@dataclass
class TrainData:
    """Float images (N, 1, 28, 28) and int64 labels, already on the training device."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def to_float_images(images: torch.Tensor, normalize: bool, device, mean: Sequence[float] = (MNIST_MEAN,),
                    std: Sequence[float] = (MNIST_STD,)) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1], or standardized per channel with ``mean`` /
    ``std`` (the dataset's, ``Dataset.mean`` / ``.std``, in [0, 1] units; default MNIST's; a single value
    serves every channel). Colour images come as (N, C, H, W) (kept) or channels-last (N, H, W, C)
    (moved to (N, C, H, W)), C = 1 or 3."""
    x = images.to(device=device, dtype=torch.float32).div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)                                       # (N, H, W) -> (N, 1, H, W)
    elif x.dim() == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2).contiguous()                   # (N, H, W, C) -> (N, C, H, W)
    if normalize:
        if len(mean) == 1:
            mean, std = tuple(mean) * x.shape[1], tuple(std) * x.shape[1]
        if len(mean) != x.shape[1] or len(std) != x.shape[1]:
            raise ValueError(f"{len(mean)} means and {len(std)} stds for {x.shape[1]}-channel images")
        for c in range(x.shape[1]):      # Python scalars, as x.sub_(m).div_(s): the same rounding on any device
            x[:, c].sub_(mean[c]).div_(std[c])
    return x


def prepare(train_images, train_labels, test_images, test_labels, cfg: TrainConfig,
            device="cpu", mean: Sequence[float] = (MNIST_MEAN,), std: Sequence[float] = (MNIST_STD,)) -> TrainData:
    """Move a dataset to ``device`` as floats (with ``cfg.normalize``, standardized with ``mean`` / ``std``:
    pass the dataset's). The held-out curve set is the first ``heldout_size`` images of the test split;
    the final accuracy is measured on the whole test split."""
    x_test = to_float_images(test_images, cfg.normalize, device, mean, std)
    y_test = test_labels.to(device=device, dtype=torch.long)
    return TrainData(
        x_train=to_float_images(train_images, cfg.normalize, device, mean, std),
        y_train=train_labels.to(device=device, dtype=torch.long),
        x_heldout=x_test[: cfg.heldout_size], y_heldout=y_test[: cfg.heldout_size],
        x_test=x_test, y_test=y_test,
    )


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks (up to 32 MiB each, 512 MiB in all) for reuse instead
    of returning them to the kernel. A training step allocates and frees the same few MB-sized
    tensors thousands of times; by default each is a fresh mmap, and touching fresh pages costs a
    page fault per 4 KiB: a 5-model LeNet-5 step takes 9.0 ms with this, 15.0 ms without
    (``benchmarks/engine_speed.py --profile``). True where the setting took (glibc)."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and
                    libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20))
    except (OSError, AttributeError):
        return False


SUBSET_SEED = 0  # the --train-size subset is the same images for every seed, so seeds vary order only


def data_order(n_train: int, seed: int, epochs: int, train_size: Optional[int] = None) -> torch.Tensor:
    """Indices of the training images in the order one run sees them: each epoch a fresh permutation
    drawn from ``seed``, of the first ``train_size`` images of a fixed shuffle. Every init trained with
    the same seed sees the same order (a controlled comparison)."""
    pool = torch.arange(n_train)
    if train_size is not None:
        g = torch.Generator().manual_seed(SUBSET_SEED)
        pool = torch.randperm(n_train, generator=g)[:train_size]
    g = torch.Generator().manual_seed(seed)
    return torch.cat([pool[torch.randperm(len(pool), generator=g)] for _ in range(epochs)])


def record_schedule(total: int, every: int) -> List[int]:
    """Steps at which to record: every ``every`` steps, and every ``every/4`` over the first two
    intervals, where curves move fastest (every=100, 1,875 steps: 25 points, plus the final one)."""
    dense = max(1, every // 4)
    steps = set(range(0, min(total, 2 * every), dense)) | set(range(0, total, every))
    return sorted(steps)


def hist_schedule(total: int, cfg: TrainConfig) -> List[int]:
    """Steps before which weight histograms are taken (each also a record point): ``cfg.hist_moments``
    moments spread evenly over the ``total`` steps, the last of them after the final step (taken at the
    end of training, so not listed here); with ``hist_moments`` 0, every ``hist_every`` steps."""
    if cfg.hist_moments <= 0:
        return list(range(0, total, cfg.hist_every))
    n = cfg.hist_moments - 1
    return sorted({min(total - 1, round(k * total / n)) for k in range(n)}) if total > 0 else []


def steps_for(n_images: int, cfg: TrainConfig) -> int:
    return math.ceil(n_images / cfg.batch_size) * cfg.epochs


# --------------------------------------------------------------------------------------------------
# The reference: one model, the plain loop. Tests compare the engine against it step for step.
# --------------------------------------------------------------------------------------------------

def lr_multipliers(model: nn.Module, names: Sequence[str], optimizer: str) -> Optional[List[float]]:
    """The learning-rate multiplier of each parameter in ``names`` under ``optimizer``, from the width
    parametrization applied to ``model`` (``model.parametrization``); None for a model without one."""
    table = getattr(model, "parametrization", None)
    if table is None:
        return None
    return [table[n].lr_mult(optimizer) for n in names]


def train_reference(model: nn.Module, data: TrainData, order: torch.Tensor, cfg: TrainConfig,
                    max_steps: Optional[int] = None) -> List[float]:
    """Train one model the plain way on the batches given by ``order``; returns the loss of each step.
    A parametrized model's lr multipliers become param groups (``make_optimizer``)."""
    total = math.ceil(len(order) / cfg.batch_size)
    named = list(model.named_parameters())
    opt, sched = make_optimizer([p for _, p in named], cfg, total,
                                lr_multipliers(model, [n for n, _ in named], cfg.optimizer))
    losses = []
    for step in range(total if max_steps is None else min(total, max_steps)):
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx],
                               label_smoothing=cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------------------------------
# The stack.
# --------------------------------------------------------------------------------------------------

@dataclass
class StackResult:
    """Final metrics per model as (S, I) tensors, the per-step losses, and the records."""
    test_acc: torch.Tensor
    test_loss: torch.Tensor
    diverged_step: torch.Tensor        # -1 where the run did not diverge
    steps: int
    wall_seconds: float
    step_losses: torch.Tensor          # (steps, S, I)
    records: rec.Records = field(default_factory=rec.Records)
    interrupted: bool = False
    threads: Tuple[int, ...] = ()      # torch thread counts the stack trained with (CPU)


class Stack:
    """S x I models of one architecture as stacked parameters and one vmapped forward."""

    def __init__(self, models: List[List[nn.Module]], device) -> None:
        self.S, self.I = len(models), len(models[0])
        if any(len(row) != self.I for row in models):
            raise ValueError("a stack needs the same number of members for every seed")
        first = models[0][0]
        self.template = copy.deepcopy(first).to("meta")
        self.buffers = {k: v.to(device) for k, v in first.named_buffers()}
        self.params: Dict[str, torch.Tensor] = {}
        per_model = [[dict(m.named_parameters()) for m in row] for row in models]
        for name, _ in first.named_parameters():
            stacked = torch.stack([torch.stack([p[name].detach() for p in row]) for row in per_model])
            self.params[name] = stacked.to(device).contiguous().requires_grad_()
        self.act = getattr(first, "act", None)
        # a width parametrization's forward multipliers {layer: m} (none: SP), the same in every model
        self.multipliers: Dict[str, float] = dict(getattr(first, "multipliers", None) or {})
        if any(dict(getattr(m, "multipliers", None) or {}) != self.multipliers for row in models for m in row):
            raise ValueError("a stack needs one parametrization: its models have different forward multipliers")
        self.kernel = None
        if lenet_kernel.supports(first) and not self.multipliers:
            M = self.S * self.I
            for v in self.params.values():
                v.grad = torch.zeros_like(v)
            self.kernel = lenet_kernel.LeNetKernel(
                {k: v.detach().view(M, *v.shape[2:]) for k, v in self.params.items()},
                {k: v.grad.view(M, *v.shape[2:]) for k, v in self.params.items()},
                first.activation, self.buffers.get("c3_mask"))
        self.chain = None if self.kernel is not None else linear_chain.chain_of(first)

        def one(p, x, return_activations=False):
            return functional_call(self.template, (p, self.buffers), (x,),
                                   {"return_activations": return_activations})

        # inner: members share a seed's batch; outer: every seed has its own batch
        self._train_fn = vmap(vmap(one, in_dims=(0, None)), in_dims=(0, 0))
        self._shared_fn = vmap(vmap(one, in_dims=(0, None)), in_dims=(0, None))
        self._shared_acts_fn = vmap(vmap(lambda p, x: one(p, x, True), in_dims=(0, None)),
                                    in_dims=(0, None))

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """xb (S, B, 1, 28, 28) -> logits (S, I, B, 10), with autograd."""
        if self.chain is not None:
            return linear_chain.forward(self.params, self.chain, self.act.fn, xb, self.S, self.I,
                                        multipliers=self.multipliers)[0]
        return self._train_fn(self.params, xb)

    def loss_and_grad(self, xb: torch.Tensor, yb: torch.Tensor, alive: Optional[torch.Tensor] = None,
                      label_smoothing: float = 0.0):
        """One step's per-model mean cross-entropy (S, I) and logits (S, I, B, 10) for seed batches
        ``xb`` (S, B, ...) and labels ``yb`` (S, B); fills every parameter's ``.grad`` with the
        gradient of its own model's loss (zero for models not ``alive``; None: all are)."""
        S, I = self.S, self.I
        if self.kernel is not None:
            weights = None if alive is None else alive.reshape(-1).float()
            loss, logits = self.kernel.loss_and_grad(xb, yb, weights, label_smoothing)
            return loss.view(S, I), logits.view(S, I, *logits.shape[1:])
        logits = self.forward(xb)                                                 # (S, I, B, 10)
        B = yb.shape[1]
        targets = yb[:, None, :].expand(S, I, B)
        per_model = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                    reduction="none", label_smoothing=label_smoothing)
        per_model = per_model.view(S, I, B).mean(-1)                              # (S, I)
        loss = (per_model if alive is None else
                torch.where(alive, per_model, torch.zeros_like(per_model))).sum()
        for p in self.params.values():
            p.grad = None
        loss.backward()
        return per_model.detach(), logits.detach()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, probe: int = 0, chunk: int = 0):
        """Accuracy and mean loss of every model on the same images, two (S, I) tensors, and the
        post-activation outputs {layer: (S, I, probe, *features)} on the first ``probe`` images.
        Small chunks keep the S*I-wide intermediates in cache (vmap: 64 images ~2.5x faster than
        1000; the LeNet kernel: 128 images ~1.9x faster than 1000). The kernel takes the probe
        images as one chunk, so its activations come back as views, not copies."""
        chunk = chunk or (128 if self.kernel is not None else 256 if self.chain is not None else 64)
        bounds = list(range(0, len(x), chunk))
        if self.kernel is not None and probe:
            bounds = [0] + list(range(min(probe, len(x)), len(x), chunk))
        correct = torch.zeros(self.S, self.I, device=x.device)
        loss = torch.zeros(self.S, self.I, device=x.device)
        acts: Dict[str, List[torch.Tensor]] = {}
        for start, stop in zip(bounds, bounds[1:] + [len(x)]):
            xb, yb = x[start:stop], y[start:stop]
            if self.kernel is not None:
                logits, a = self._kernel_outputs(xb)
            elif self.chain is not None:
                logits, a = linear_chain.forward(self.params, self.chain, self.act.fn, xb, self.S, self.I,
                                                 return_activations=start < probe, multipliers=self.multipliers)
            elif start < probe:
                logits, a = self._shared_acts_fn(self.params, xb)                   # (S, I, n, 10)
            else:
                logits = self._shared_fn(self.params, xb)
            if start < probe:
                for k, v in a.items():
                    acts.setdefault(k, []).append(v[:, :, : probe - start])
            correct += (logits.argmax(-1) == yb).sum(-1)
            loss += F.cross_entropy(logits.flatten(0, 2), yb.repeat(self.S * self.I),
                                    reduction="none").view(self.S, self.I, -1).sum(-1)
        return correct / len(x), loss / len(x), {k: v[0] if len(v) == 1 else torch.cat(v, dim=2)
                                                 for k, v in acts.items()}

    def _kernel_outputs(self, x: torch.Tensor):
        """The kernel's logits and activations for images x shared by every model, shaped as the
        vmapped model's: (S, I, n, ...)."""
        S, I, M = self.S, self.I, self.S * self.I
        logits, acts = self.kernel.forward(x[None])
        acts = {k: (lenet_kernel.LeNetKernel.per_model(v, M) if v.dim() == 4 else v)
                for k, v in acts.items()}
        return logits.view(S, I, *logits.shape[1:]), {k: v.reshape(S, I, *v.shape[1:])
                                                      for k, v in acts.items()}

    def write_back(self, models: List[List[nn.Module]]) -> None:
        """Copy the trained weights into the original ``nn.Module`` objects."""
        with torch.no_grad():
            for s, row in enumerate(models):
                for i, m in enumerate(row):
                    for name, p in m.named_parameters():
                        p.copy_(self.params[name][s, i].to(p.device))


def _layer_names(stack: Stack) -> List[str]:
    return [n[: -len(".weight")] for n in stack.params if n.endswith(".weight")]


def _record_layers(stack: Stack, step: int, acts: Dict[str, torch.Tensor], ranges, hist: bool,
                   records: rec.Records) -> None:
    rectifier = bool(stack.act is not None and stack.act.rectifier)
    for layer in _layer_names(stack):
        w = stack.params[layer + ".weight"]
        b = stack.params.get(layer + ".bias")
        values = rec.layer_weight_stats(w)
        values["grad_norm"] = rec.grad_norm(w.grad, w)   # filled at the step's backward; see below
        values["distinct_units"] = rec.distinct_units(w, b)
        act_key = layer.split(".")[-1]
        if act_key in acts:
            values.update(rec.activation_stats(acts[act_key], rectifier and act_key != "output"))
        records.layers.extend(rec.per_run_rows(step, values, layer=layer))
        if hist:
            counts = rec.histograms(w, ranges[layer])
            lims = ranges[layer].reshape(-1).tolist()
            for r in range(stack.S * stack.I):
                lim = lims[r]
                width = 2 * lim / rec.HIST_BINS
                for k, c in enumerate(counts.reshape(-1, rec.HIST_BINS)[r].tolist()):
                    records.hists.append({"run": r, "step": step, "layer": layer,
                                          "bin_left": -lim + k * width,
                                          "bin_right": -lim + (k + 1) * width, "count": c})


def train_stack(models: List[List[nn.Module]], seeds: Sequence[int], data: TrainData,
                cfg: TrainConfig, progress: Optional[Callable[[int], None]] = None,
                frozen: Sequence[str] = ()) -> StackResult:
    """Train ``models[s][i]`` (all of one architecture, already initialized) on the data order of
    ``seeds[s]``; write the trained weights back into them and return metrics and records.

    ``progress(n)`` is called with the number of steps just done (for a progress bar). Ctrl-C stops
    training cleanly: the result is marked ``interrupted`` and holds everything recorded so far.
    ``frozen`` names layers (e.g. ``["c1", "c3"]``) whose gradients are zeroed before every optimizer
    step, in every model of the stack: with zero gradients from the start, Adam's moments and SGD's
    momentum stay 0 and the weights stay exactly as they were -- which weight decay would break, so
    freezing needs ``weight_decay == 0``.
    """
    device = data.x_train.device
    if device.type == "cpu":
        keep_freed_memory()
    stack = Stack(models, device)
    S, I = stack.S, stack.I
    held = [n for n in stack.params if n.rsplit(".", 1)[0] in frozen]
    unknown = sorted(set(frozen) - {n.rsplit(".", 1)[0] for n in stack.params})
    if unknown:
        raise ValueError(f"cannot freeze {', '.join(unknown)}: no such layer; layers: "
                         f"{', '.join(_layer_names(stack))}")
    if held and cfg.weight_decay:
        raise ValueError("frozen layers need weight_decay 0 (decay would move them)")
    orders = torch.stack([data_order(len(data.x_train), s, cfg.epochs, cfg.train_size)
                          for s in seeds]).to(device)                              # (S, n)
    n_images = orders.shape[1] // cfg.epochs
    total = steps_for(n_images, cfg)
    per_epoch = total // cfg.epochs
    tensors = list(stack.params.values())
    lr_mults = lr_multipliers(models[0][0], list(stack.params), cfg.optimizer)   # None: SP
    if StackOptimizer.supported(tensors):
        opt, sched = StackOptimizer(tensors, cfg, total, lr_mults), None
    else:
        opt, sched = make_optimizer(tensors, cfg, total, lr_mults)
    records = rec.Records()
    ranges = {layer: torch.tensor([[rec.histogram_range(stack.params[layer + ".weight"][s, i])
                                    for i in range(I)] for s in range(S)])
              for layer in _layer_names(stack)}
    alive = torch.ones(S, I, dtype=torch.bool, device=device)
    all_alive = True        # then the step skips the masking (the same numbers, fewer operations)
    diverged_step = torch.full((S, I), -1, dtype=torch.long)
    run_loss = torch.zeros(S, I, device=device)
    run_correct = torch.zeros(S, I, device=device)
    run_seen = 0
    step_losses = torch.zeros(total, S, I)
    pending = None   # a record point waiting for this step's gradients
    interrupted = False
    threads = ThreadGovernor().start() if device.type == "cpu" else None
    t0 = time.perf_counter()
    step = 0
    hist_at = set(hist_schedule(total, cfg)) if cfg.record else set()
    record_at = set(record_schedule(total, cfg.record_every)) | hist_at if cfg.record else set()
    try:
        for step in range(total):
            is_record = step in record_at
            if is_record:
                pending = _snapshot(stack, data, cfg, step, run_loss, run_correct, run_seen, records)
                run_loss.zero_()
                run_correct.zero_()
                run_seen = 0
            e, k = divmod(step, per_epoch)
            start = e * n_images + k * cfg.batch_size
            idx = orders[:, start:min(start + cfg.batch_size, (e + 1) * n_images)]     # (S, B)
            xb, yb = data.x_train[idx], data.y_train[idx]                             # (S,B,1,28,28)
            per_model, logits = stack.loss_and_grad(xb, yb, None if all_alive else alive,
                                                    cfg.label_smoothing)
            if pending is not None:
                hist = step in hist_at
                _record_layers(stack, step, pending, ranges, hist, records)
                pending = None
            for name in held:
                stack.params[name].grad.zero_()
            opt.step()
            if sched is not None:
                sched.step()
            with torch.no_grad():
                pm = per_model
                step_losses[step] = pm.cpu() if device.type == "cpu" else pm.to("cpu", non_blocking=True)
                run_loss += pm
                run_correct += (logits.argmax(-1) == yb[:, None, :]).float().mean(-1)
                run_seen += 1
                if is_record or step == total - 1:
                    bad = alive & ~torch.isfinite(pm)
                    if bad.any():
                        diverged_step[bad.cpu()] = step
                        alive &= ~bad
                        all_alive = False
            if threads is not None:
                threads.tick()
            if progress is not None:
                progress(1)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        if threads is not None:
            threads.stop()
        raise
    wall = time.perf_counter() - t0
    steps_done = step + 1 if not interrupted else step
    # non-finite losses between record points: find the first one per model
    finite = torch.isfinite(step_losses[:steps_done])
    for s in range(S):
        for i in range(I):
            if diverged_step[s, i] < 0 and not bool(finite[:, s, i].all()):
                diverged_step[s, i] = int((~finite[:, s, i]).nonzero()[0, 0])
    if cfg.record and not interrupted:
        for p in tensors:
            p.grad = None
        acts = _snapshot(stack, data, cfg, total, run_loss, run_correct, run_seen, records)
        _record_layers(stack, total, acts, ranges, True, records)
    test_acc, test_loss, _ = stack.evaluate(data.x_test, data.y_test)
    if threads is not None:
        threads.stop()
    stack.write_back(models)
    return StackResult(test_acc=test_acc.cpu(), test_loss=test_loss.cpu(),
                       diverged_step=diverged_step, steps=steps_done, wall_seconds=wall,
                       step_losses=step_losses[:steps_done], records=records,
                       interrupted=interrupted,
                       threads=tuple(sorted(threads.used)) if threads is not None else ())


def _snapshot(stack: Stack, data: TrainData, cfg: TrainConfig, step: int, run_loss, run_correct,
              run_seen: int, records: rec.Records) -> Dict[str, torch.Tensor]:
    """Curve point at ``step`` (held-out accuracy/loss, running train loss/accuracy since the last
    point) and the probe activations, returned for the layer record that follows the backward."""
    acc, loss, acts = stack.evaluate(data.x_heldout, data.y_heldout, probe=cfg.probe_size)
    values = {"heldout_acc": acc, "heldout_loss": loss}
    if run_seen:
        values["train_loss"] = run_loss / run_seen
        values["train_acc"] = run_correct / run_seen
    else:
        nan = torch.full_like(acc, math.nan)
        values["train_loss"], values["train_acc"] = nan, nan
    records.curves.extend(rec.per_run_rows(step, values))
    return acts
