"""LSUV (Mishkin & Matas 2015): the model-level, data-dependent initializer ``lsuv``."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from initlab.init.schemes import orthogonal
from initlab.init.spec import MODEL_INITIALIZERS, Limit, init_layers, limits

_LSUV_TOL = 0.1      # Tol_var of Mishkin & Matas (2015), Algorithm 1
_LSUV_MAX_ITER = 10  # T_max of Mishkin & Matas (2015)


@MODEL_INITIALIZERS.register("lsuv")
@limits(tol=Limit(0, 1, open=True), max_iter=Limit(0, integer=True))
def lsuv(
    model: nn.Module,
    *,
    generator: torch.Generator,
    data: Optional[Tensor] = None,
    activation: str = "relu",
    tol: float = _LSUV_TOL,
    max_iter: int = _LSUV_MAX_ITER,
) -> Dict[str, Any]:
    r"""Layer-sequential unit-variance init: orthonormal start, then rescale each layer to unit output variance.

    Paper: Mishkin & Matas (2015), "All you need is a good init" (Algorithm 1).

    1. Every Conv/Linear weight :math:`W_L` (see :func:`init_layers`) gets :func:`orthogonal` with gain 1.
    2. For each layer :math:`L` in definition order, with :math:`B_L` its output on ``data``:

    .. math::
        \textbf{while } |\operatorname{Var}(B_L) - 1| \ge \text{tol} \textbf{ and } t < \text{max\_iter}:
        \quad W_L \leftarrow W_L / \sqrt{\operatorname{Var}(B_L)}

    Forwards run under ``no_grad`` in eval mode (no dropout noise, no BatchNorm running-stat
    updates), and the model's mode is restored afterwards. Biases keep whatever
    :func:`initialize` set (0 by default), so with zero bias one rescale is exact.

    Args:
        model: the model; called as ``model(data)``.
        generator: the source of all randomness (the orthogonal start).
        data: a batch of inputs (required).
        activation: unused (the rescaling replaces any gain).
        tol: the tolerance on :math:`|\operatorname{Var}(B_L) - 1|`.
        max_iter: the most rescales per layer.

    Returns:
        ``{"lsuv_iters": {layer: rescales used}, "lsuv_var": {layer: final output variance}}``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))
        >>> x = torch.randn(256, 20, generator=g)
        >>> info = initialize(net, "lsuv", generator=g, data=x)
        >>> all(abs(v - 1) < 0.1 for v in info["lsuv_var"].values())
        True
    """
    if data is None:
        raise ValueError("lsuv needs a data batch: initialize(model, 'lsuv', generator=g, data=x)")
    layers = list(init_layers(model))
    for _, m in layers:
        orthogonal(m.weight, generator=generator, gain=1.0)

    captured: Dict[str, Tensor] = {}

    def output_var(module: nn.Module, name: str) -> float:
        captured.clear()
        handle = module.register_forward_hook(lambda mod, inp, out: captured.__setitem__("out", out))
        try:
            model(data)
        finally:
            handle.remove()
        if "out" not in captured:
            raise RuntimeError(f"lsuv: layer {name!r} was not called by model(data)")
        return captured["out"].detach().float().var().item()

    iters: Dict[str, int] = {}
    variances: Dict[str, float] = {}
    was_training = model.training
    model.eval()  # deterministic forwards: no dropout (which would draw from the global RNG)
    try:
        with torch.no_grad():
            for name, m in layers:
                var = output_var(m, name)
                t = 0
                while abs(var - 1.0) >= tol and t < max_iter:
                    if not (math.isfinite(var) and var > 0):
                        raise RuntimeError(f"lsuv: layer {name!r} has output variance {var}; cannot rescale")
                    m.weight.div_(math.sqrt(var))
                    t += 1
                    var = output_var(m, name)
                iters[name], variances[name] = t, var
    finally:
        model.train(was_training)
    return {"lsuv_iters": iters, "lsuv_var": variances}


lsuv.formula = "orthogonal (gain 1), then per layer W /= sqrt(Var(output)) until |Var - 1| < tol"  # type: ignore[attr-defined]
