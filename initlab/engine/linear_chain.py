"""Fully connected nets (flatten, then linear layers with an activation between) for a stack of models,
as batched matrix products.

The engine's general path runs a model through ``torch.func.vmap(functional_call(...))``: every
``nn.Linear`` call then goes through vmap's batching rules, and a plain deep net (``mlp``, 30 layers of
256 units) spends about half its step there. A chain of linear layers needs none of it: with the S x I
models' weights stacked as (S, I, out, in), each layer is one ``baddbmm`` over the M = S * I models,
and autograd differentiates that directly. The maths is the model's own forward; only the order of
the floating-point sums differs from the vmapped path (so results agree to rounding, not bit for bit).

A model opts in by naming its chain: ``linear_chain`` (layer names in order, the last one giving the
logits, none of them followed by anything but the model's activation ``act``). A width parametrization's
forward multipliers (``model.multipliers``, {layer: m}: the layer computes ``m · (W x) + b``) are
``baddbmm``'s ``alpha``; a layer without one is called exactly as before (SP: the same bits).

Each layer is one autograd function (``StackedLinear``) whose backward writes the weight gradient in the
weight's own (M, out, in) layout. Autograd's ``baddbmm`` backward gives it as (M, in, out) transposed,
and storing that as ``.grad`` cost a copy of every weight per step: at width 1024 about 45 % of the
step (``python benchmarks/width_step.py --profile``). Both orientations sum over the same batch
dimension; with both sides of W at least ``DIRECT_GRADIENT_MIN`` MKL returns the same bits either way
(not below: a 10-class readout's product is computed the old way and copied, which costs little), and
``tests/test_engine.py`` holds the gradients equal to autograd's, bit for bit, over such shapes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


def chain_of(model: nn.Module) -> Optional[List[str]]:
    """The model's linear layers in order if it is a plain fully connected chain, else None."""
    names = getattr(model, "linear_chain", None)
    if not names or not all(isinstance(getattr(model, n, None), nn.Linear) for n in names):
        return None
    return list(names)


DIRECT_GRADIENT_MIN = 32        # W's smaller side from which its gradient is computed in its own layout


class StackedLinear(torch.autograd.Function):
    """``b + alpha · h Wᵀ`` for M stacked models: h (M, B, in), W (M, out, in), b (M, 1, out); the
    gradients come back in the inputs' layouts (W's as (M, out, in), contiguous)."""

    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(h, w)
        ctx.alpha = alpha
        if alpha == 1:                                                  # SP: the call of old, same bits
            return torch.baddbmm(b, h, w.transpose(1, 2))
        return torch.baddbmm(b, h, w.transpose(1, 2), alpha=alpha)

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, w = ctx.saved_tensors
        alpha = ctx.alpha
        grad_h = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.bmm(grad, w)
            if alpha != 1:
                grad_h = grad_h * alpha
        if ctx.needs_input_grad[1]:
            if min(w.shape[1:]) >= DIRECT_GRADIENT_MIN:                 # (M, out, in): the weight's layout
                grad_w = torch.bmm(grad.transpose(1, 2), h)
            else:                                                       # autograd's call, then a small copy
                grad_w = torch.bmm(h.transpose(1, 2), grad).transpose(1, 2).contiguous()
            if alpha != 1:
                grad_w = grad_w * alpha
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(1, keepdim=True)
        return grad_h, grad_w, grad_b, None


def forward(params: Dict[str, Tensor], names: Sequence[str], act, x: Tensor, S: int, I: int,
            return_activations: bool = False,
            multipliers: Optional[Dict[str, float]] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Logits (S, I, B, classes) of every model, and with ``return_activations`` every layer's output
    {name: (S, I, B, units)} (the last layer's: the logits). ``x`` is (S, B, ...): one batch per seed,
    shared by that seed's I models; or (B, ...): one batch for all. ``params[name + '.weight']`` is
    (S, I, out, in), ``params[name + '.bias']`` (S, I, out). ``multipliers`` {layer: m}: that layer
    computes ``b + m · (h W^T)`` (a width parametrization's forward multiplier, ``baddbmm``'s alpha)."""
    M = S * I
    if x.dim() == 5:                                               # (S, B, C, H, W): a batch per seed
        h = x.flatten(2)[:, None].expand(S, I, -1, -1)
    else:                                                          # (B, C, H, W): shared by all
        h = x.flatten(1)[None, None].expand(S, I, -1, -1)
    B = h.shape[2]
    h = h.reshape(M, B, h.shape[-1])
    acts: Dict[str, Tensor] = {}
    last = len(names) - 1
    for k, name in enumerate(names):
        w, b = params[name + ".weight"], params[name + ".bias"]
        out = w.shape[-2]
        alpha = multipliers.get(name, 1) if multipliers else 1           # b + m (h W^T)
        h = StackedLinear.apply(h, w.reshape(M, out, -1), b.reshape(M, 1, out), alpha)
        if k < last:
            h = act(h)
        if return_activations:
            acts[name] = h.view(S, I, B, out)
    return h.view(S, I, B, h.shape[-1]), acts
