"""The optimizers and learning-rate schedules of a stack: fused Adam/AdamW/SGD over its stacked tensors."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from initlab.engine.config import OPTIMIZERS, SCHEDULES, TrainConfig


def lr_groups(lr_mults: Optional[Sequence[float]], n: int) -> Dict[float, List[int]]:
    """{lr multiplier: indices of the tensors that have it}, in first-seen order; one group of all
    ``n`` tensors at multiplier 1.0 when ``lr_mults`` is None (the standard parametrization)."""
    if lr_mults is None:
        return {1.0: list(range(n))}
    if len(lr_mults) != n:
        raise ValueError(f"{len(lr_mults)} lr multipliers for {n} tensors")
    groups: Dict[float, List[int]] = {}
    for k, m in enumerate(lr_mults):
        groups.setdefault(float(m), []).append(k)
    return groups


def make_optimizer(params: Sequence[torch.Tensor], cfg: TrainConfig, total_steps: int,
                   lr_mults: Optional[Sequence[float]] = None):
    """Optimizer and per-step LR scheduler (or None). Shared by the engine and the reference loop.

    ``lr_mults``: a learning-rate multiplier per tensor (a width parametrization's, e.g. μP's 1/r on
    hidden weights under Adam): one param group per multiplier m with lr = m · lr and weight decay
    wd / m (as ``mup``'s MuAdam / MuSGD); None: one group, as always."""
    params = list(params)
    # fused: the same update maths in one kernel per step (7x faster than the per-tensor loop here)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    groups = lr_groups(lr_mults, len(params))
    if lr_mults is not None:
        params = [{"params": [params[k] for k in idx], "lr": cfg.lr * m, "weight_decay": cfg.weight_decay / m}
                  for m, idx in groups.items()]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True,
                              weight_decay=cfg.weight_decay, fused=fused)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
    if cfg.schedule == "constant":
        return opt, None
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr if lr_mults is None else [cfg.lr * m for m in groups],
            total_steps=total_steps, pct_start=cfg.warmup,
            anneal_strategy="cos", cycle_momentum=False, div_factor=25.0, final_div_factor=1e3)
        return opt, sched
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from: {', '.join(SCHEDULES)}")


def onecycle_lrs(cfg: TrainConfig, total_steps: int) -> List[float]:
    """The learning rate of every step under ``--schedule onecycle``: what ``torch.optim.lr_scheduler.
    OneCycleLR(max_lr=lr, pct_start=warmup, anneal_strategy="cos", div_factor=25,
    final_div_factor=1e3)`` sets before each step, the same floats (tests compare them). Cosine from
    lr/25 up to lr over the warm-up, then down to lr/25e3 at the last step."""
    initial = cfg.lr / 25.0
    phases = [(float(cfg.warmup * total_steps) - 1, initial, cfg.lr),
              (total_steps - 1, cfg.lr, initial / 1e3)]
    lrs = []
    for step in range(total_steps):
        start = 0
        for k, (end, lo, hi) in enumerate(phases):
            if step <= end or k == len(phases) - 1:
                pct = (step - start) / (end - start)
                lrs.append(hi + (lo - hi) / 2.0 * (math.cos(math.pi * pct) + 1))
                break
            start = end
    return lrs


class StackOptimizer:
    """The engine's optimizer step: Adam, AdamW or Nesterov SGD over the stack's tensors as one call of
    the fused kernel that ``torch.optim.Adam(..., fused=True)`` (AdamW, SGD) calls, with the same
    arguments, so the same arithmetic bit for bit (``tests/test_engine.py`` checks it against
    ``torch.optim``). What it leaves out: torch.optim's per-step Python (hooks, grouping by device,
    state look-ups; ~0.3 ms a step, a tenth of a one-model LeNet-5 step) and the import of
    ``torch._dynamo`` that building any ``torch.optim`` optimizer triggers (~1 s of start-up).
    ``supported(params)`` is False where there is no fused kernel; the engine then uses
    :func:`make_optimizer`.

    ``lr_mults`` (a width parametrization's, one per tensor): the tensors are grouped by multiplier m
    and the fused kernel is called once per group with lr = m · lr (the schedule's lr of the step) and
    weight decay wd / m (``mup``'s MuAdam / MuSGD). Without them there is one group of every tensor at
    the plain lr and decay -- the same single call, bit for bit, as before parametrizations."""

    BETAS, EPS, MOMENTUM = (0.9, 0.999), 1e-8, 0.9    # torch.optim's Adam defaults; the lab's momentum

    def __init__(self, params: Sequence[torch.Tensor], cfg: TrainConfig, total_steps: int,
                 lr_mults: Optional[Sequence[float]] = None) -> None:
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from: {', '.join(SCHEDULES)}")
        self.params, self.cfg = list(params), cfg
        self.groups = list(lr_groups(lr_mults, len(self.params)).items())     # [(m, tensor indices)]
        self.lrs = onecycle_lrs(cfg, total_steps) if cfg.schedule == "onecycle" else None
        self.steps = 0
        if cfg.optimizer == "sgd":
            self.buffers: List[torch.Tensor] = []       # momentum, allocated at the first step
        else:
            self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
            self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format)
                               for p in self.params]
            # one step counter per tensor, as torch.optim keeps them (float32 for the fused kernel)
            self.counters = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @staticmethod
    def supported(params: Sequence[torch.Tensor]) -> bool:
        return all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
                   for p in params) and hasattr(torch, "_fused_adam_")

    @torch.no_grad()
    def step(self) -> None:
        cfg, params = self.cfg, self.params
        grads = [p.grad for p in params]
        lr = cfg.lr if self.lrs is None else self.lrs[min(self.steps, len(self.lrs) - 1)]
        self.steps += 1
        if len(self.groups) == 1 and self.groups[0][0] == 1.0:         # SP: one call, as it always was
            self._step(params, grads, lr, cfg.weight_decay, range(len(params)))
            return
        for m, idx in self.groups:                                     # one fused call per multiplier
            self._step([params[k] for k in idx], [grads[k] for k in idx], lr * m, cfg.weight_decay / m, idx)

    def _step(self, params, grads, lr: float, weight_decay: float, idx) -> None:
        """One fused call over ``params`` (the tensors ``idx`` of the stack) at ``lr`` and ``weight_decay``."""
        cfg = self.cfg
        every = len(idx) == len(self.params)
        pick = (lambda xs: xs) if every else (lambda xs: [xs[k] for k in idx])
        if cfg.optimizer == "sgd":
            first = not self.buffers or self.buffers[idx[0]] is None
            if not self.buffers:
                self.buffers = [None] * len(self.params)
            if first:
                for k, g in zip(idx, grads):
                    self.buffers[k] = torch.empty_like(g)
            torch._fused_sgd_(params, grads, pick(self.buffers), weight_decay=weight_decay,
                              momentum=self.MOMENTUM, lr=lr, dampening=0.0, nesterov=True,
                              maximize=False, is_first_step=first, grad_scale=None, found_inf=None)
            return
        counters = pick(self.counters)
        torch._foreach_add_(counters, 1)
        fused = torch._fused_adamw_ if cfg.optimizer == "adamw" else torch._fused_adam_
        fused(params, grads, pick(self.exp_avg), pick(self.exp_avg_sq), [], counters, amsgrad=False, lr=lr,
              beta1=self.BETAS[0], beta2=self.BETAS[1], weight_decay=weight_decay, eps=self.EPS,
              maximize=False, grad_scale=None, found_inf=None)


