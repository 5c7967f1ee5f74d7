"""The optimizers and learning-rate schedules of a stack: fused Adam/AdamW/SGD over its stacked tensors."""
from __future__ import annotations

import math
from typing import List, Sequence

import torch

from initlab.engine.config import OPTIMIZERS, SCHEDULES, TrainConfig


def make_optimizer(params: Sequence[torch.Tensor], cfg: TrainConfig, total_steps: int):
    """Optimizer and per-step LR scheduler (or None). Shared by the engine and the reference loop."""
    # fused: the same update maths in one kernel per step (7x faster than the per-tensor loop here)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
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
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.warmup,
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
    :func:`make_optimizer`."""

    BETAS, EPS, MOMENTUM = (0.9, 0.999), 1e-8, 0.9    # torch.optim's Adam defaults; the lab's momentum

    def __init__(self, params: Sequence[torch.Tensor], cfg: TrainConfig, total_steps: int) -> None:
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from: {', '.join(SCHEDULES)}")
        self.params, self.cfg = list(params), cfg
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
        if cfg.optimizer == "sgd":
            first = not self.buffers
            if first:
                self.buffers = [torch.empty_like(g) for g in grads]
            torch._fused_sgd_(params, grads, self.buffers, weight_decay=cfg.weight_decay,
                              momentum=self.MOMENTUM, lr=lr, dampening=0.0, nesterov=True,
                              maximize=False, is_first_step=first, grad_scale=None, found_inf=None)
            return
        torch._foreach_add_(self.counters, 1)
        fused = torch._fused_adamw_ if cfg.optimizer == "adamw" else torch._fused_adam_
        fused(params, grads, self.exp_avg, self.exp_avg_sq, [], self.counters, amsgrad=False, lr=lr,
              beta1=self.BETAS[0], beta2=self.BETAS[1], weight_decay=cfg.weight_decay, eps=self.EPS,
              maximize=False, grad_scale=None, found_inf=None)


