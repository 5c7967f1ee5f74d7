r"""Restricted Boltzmann machines, greedy layer-wise pre-training, and the ``dbn`` model-level init.

Paper: Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets"; the
recipe (CD-1, learning rate, momentum, weight cost, initial weights and biases) follows Hinton (2010),
"A practical guide to training restricted Boltzmann machines" (UTML TR 2010-003).

An RBM with visible units v (here pixel intensities in [0, 1], read as Bernoulli probabilities) and
binary hidden units h has the energy and conditionals

.. math::
    E(v, h) = -b^\top v - c^\top h - h^\top W v, \qquad
    p(h_j = 1 \mid v) = \sigma(c_j + W_{j:} v), \qquad
    p(v_i = 1 \mid h) = \sigma(b_i + W_{:i}^\top h)

with ``W`` laid out (hidden, visible) — the layout of ``nn.Linear(visible, hidden).weight``, so a
trained RBM *is* a hidden layer: ``W`` and ``c`` are copied into it. Contrastive divergence with one
Gibbs step (CD-1) on a batch of B images:

.. math::
    h_0 \sim p(h \mid v_0), \quad v_1 = p(v \mid h_0), \quad q_1 = p(h \mid v_1), \qquad
    \Delta W = \tfrac{1}{B}\,(q_0^\top v_0 - q_1^\top v_1), \quad
    \Delta b = \overline{v_0 - v_1}, \quad \Delta c = \overline{q_0 - q_1}

(``q_0 = p(h | v_0)``; only ``h_0`` is sampled, the rest are probabilities, as the guide advises),
applied with momentum and an L2 weight cost on ``W``. Greedy stacking: the first RBM models the
pixels, the second models the first one's hidden probabilities, and so on.

``dbn`` (registered in ``initlab.init.MODEL_INITIALIZERS``, so available wherever ``initlab.init`` is
imported) pre-trains one RBM per hidden layer of a fully connected model (``mlp``) on ``data`` and
copies their weights and hidden biases in; the output layer gets ``xavier``. Backprop then fine-tunes
the whole net: a deep belief net used as an initialization.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from initlab.init.schemes import xavier
from initlab.init.spec import COUNT, MODEL_INITIALIZERS, POSITIVE, init_layers, limits
from initlab.options import flag

# Hinton (2010), "A practical guide to training RBMs" — the defaults below, with the section they come from.
INIT_STD = 0.01        # sec. 8: W ~ N(0, 0.01^2)
LR = 0.1               # sec. 4: 0.1 for binary units and this weight scale (measured: lr 0.05 ends higher)
MOMENTUM = 0.5         # sec. 9: 0.5 early in learning (0.9 only after ~5 epochs; we run one)
WEIGHT_COST = 2e-4     # sec. 10: L2 weight cost 0.0001 - 0.001
BATCH_SIZE = 100       # sec. 3: ~10 to 100 (one per class is the guide's rule of thumb)
ERROR_IMAGES = 1000    # reconstruction error is measured on the first this-many images


@dataclass
class RBM:
    """A Bernoulli-Bernoulli RBM: ``W`` (hidden, visible), visible bias ``b``, hidden bias ``c``."""
    W: Tensor
    b: Tensor
    c: Tensor

    def hidden_probs(self, v: Tensor) -> Tensor:
        return torch.sigmoid(v @ self.W.T + self.c)          # (B, hidden)

    def visible_probs(self, h: Tensor) -> Tensor:
        return torch.sigmoid(h @ self.W + self.b)            # (B, visible)

    def reconstruction_error(self, v: Tensor) -> float:
        """Mean squared difference per visible unit between v and its mean-field reconstruction
        p(v | p(h | v)) (deterministic, so two measurements of one RBM agree exactly)."""
        return float((v - self.visible_probs(self.hidden_probs(v))).pow(2).mean())


def new_rbm(visible: int, hidden: int, data: Tensor, generator: torch.Generator) -> RBM:
    """Guide sec. 8: W ~ N(0, 0.01^2), hidden bias 0, visible bias log(p / (1 - p)) with p the mean of
    each visible unit over ``data`` (clamped to [0.001, 0.999] so empty border pixels get a finite bias)."""
    W = torch.empty(hidden, visible, dtype=data.dtype).normal_(0.0, INIT_STD, generator=generator)
    p = data.mean(0).clamp(1e-3, 1 - 1e-3)
    return RBM(W=W, b=torch.log(p / (1 - p)), c=torch.zeros(hidden, dtype=data.dtype))


@torch.no_grad()
def train_rbm(data: Tensor, hidden: int, *, generator: torch.Generator, epochs: int = 1,
              batch_size: int = BATCH_SIZE, lr: float = LR, momentum: float = MOMENTUM,
              weight_cost: float = WEIGHT_COST) -> Tuple[RBM, Dict[str, float]]:
    """Train one RBM with CD-1 on ``data`` (N, visible) in [0, 1]; each epoch visits the images in an
    order drawn from ``generator``. Returns the RBM and ``{"recon_error_start", "recon_error_end",
    "seconds"}`` (errors on the first ``ERROR_IMAGES`` images, before and after training).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> v = (torch.rand(500, 20, generator=g) < 0.3).float()
        >>> rbm, info = train_rbm(v, 8, generator=g, epochs=3)
        >>> info["recon_error_end"] < info["recon_error_start"]
        True
    """
    t0 = time.perf_counter()
    n, visible = data.shape
    rbm = new_rbm(visible, hidden, data, generator)
    probe = data[:ERROR_IMAGES]
    start_error = rbm.reconstruction_error(probe)
    vW, vb, vc = torch.zeros_like(rbm.W), torch.zeros_like(rbm.b), torch.zeros_like(rbm.c)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for k in range(0, n, batch_size):
            v0 = data[order[k:k + batch_size]]                                  # (B, visible)
            q0 = rbm.hidden_probs(v0)                                           # (B, hidden)
            h0 = torch.bernoulli(q0, generator=generator)                       # binary states
            v1 = rbm.visible_probs(h0)                                          # reconstruction
            q1 = rbm.hidden_probs(v1)
            B = v0.shape[0]
            dW = (q0.T @ v0 - q1.T @ v1) / B - weight_cost * rbm.W              # (hidden, visible)
            vW.mul_(momentum).add_(dW, alpha=lr)
            vb.mul_(momentum).add_((v0 - v1).mean(0), alpha=lr)
            vc.mul_(momentum).add_((q0 - q1).mean(0), alpha=lr)
            rbm.W += vW
            rbm.b += vb
            rbm.c += vc
    end_error = rbm.reconstruction_error(probe)
    return rbm, {"recon_error_start": start_error, "recon_error_end": end_error,
                 "seconds": time.perf_counter() - t0}


@torch.no_grad()
def pretrain_stack(data: Tensor, sizes: List[int], *, generator: torch.Generator,
                   **train_options) -> Tuple[List[RBM], List[Dict[str, float]]]:
    """Greedy layer-wise pre-training: RBM k is trained on the hidden probabilities p(h | v) of RBM
    k-1 (mean-field activities, not samples), RBM 1 on ``data`` (N, visible) in [0, 1]."""
    rbms, infos = [], []
    x = data
    for hidden in sizes:
        rbm, info = train_rbm(x, hidden, generator=generator, **train_options)
        rbms.append(rbm)
        infos.append({"visible": x.shape[1], "hidden": hidden, "images": x.shape[0], **info})
        x = rbm.hidden_probs(x)
    return rbms, infos


# --------------------------------------------------------------------------------------------------
# The model-level init
# --------------------------------------------------------------------------------------------------

def check_model(model: nn.Module) -> None:
    """Raise ValueError unless ``model``'s weight layers are a chain of ``nn.Linear`` (what a stack of
    RBMs can fill): every layer's input size is the previous one's output size."""
    layers = list(init_layers(model))
    if len(layers) < 2:
        raise ValueError("dbn needs at least one hidden layer before the output layer")
    for (name, m), (_, prev) in zip(layers, [(None, None)] + layers[:-1]):
        if not isinstance(m, nn.Linear):
            raise ValueError(f"dbn pre-trains fully connected layers only; layer {name!r} is a "
                             f"{type(m).__name__} (use {flag('model')} mlp)")
        if prev is not None and m.in_features != prev.out_features:
            raise ValueError(f"dbn needs a chain of layers; {name!r} takes {m.in_features} inputs "
                             f"but the layer before gives {prev.out_features}")


@MODEL_INITIALIZERS.register("dbn")
@limits(images=COUNT, epochs=COUNT, batch_size=COUNT, lr=POSITIVE)
def dbn(
    model: nn.Module,
    *,
    generator: torch.Generator,
    data: Optional[Tensor] = None,
    activation: str = "sigmoid",
    images: int = 20000,
    epochs: int = 1,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
) -> Dict[str, Any]:
    r"""Deep-belief-net init: greedy CD-1 pre-training of one RBM per hidden layer, copied into the model.

    Paper: Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets"; fine-tuning
    a pre-trained stack with backprop as in Hinton & Salakhutdinov (2006), "Reducing the
    dimensionality of data with neural networks".

    For hidden layers :math:`1..L` (Linear, sizes :math:`n_0 \to n_1 \to \dots \to n_L`) train RBM
    :math:`k` with CD-1 (see the module docstring) on :math:`x_{k-1}`, where :math:`x_0` = the first
    ``images`` rows of ``data`` flattened and :math:`x_k = \sigma(W_k x_{k-1} + c_k)`; then

    .. math::
        \text{layer}_k.\text{weight} \leftarrow W_k, \quad \text{layer}_k.\text{bias} \leftarrow c_k,
        \qquad \text{output.weight} \sim \text{xavier}, \quad \text{output.bias} = \text{bias of initialize}

    The RBMs' hidden units are sigmoid, so the net they describe is the ``sigmoid`` one; with another
    activation the weights are still pre-trained features, but the layers compute something else.

    Args:
        model: a model whose weight layers are a chain of ``nn.Linear`` (``mlp``); see :func:`check_model`.
        generator: the source of all randomness (initial RBM weights, batch order, hidden samples).
        data: training images, (N, 1, 28, 28) or (N, features), values in [0, 1] (Bernoulli visible
            units: no ``--normalize``). ``initlab.study`` passes ``images`` of them, drawn with the run seed.
        activation: unused (RBM hidden units are sigmoid).
        images: how many images each RBM trains on (and how many the study hands over).
        epochs: CD-1 passes over them per RBM.
        batch_size, lr: CD-1 mini-batch and learning rate (momentum 0.5, weight cost 2e-4: module constants).

    Returns:
        ``{"pretrain_seconds": wall time of all RBMs, "rbm": [{"layer", "visible", "hidden", "images",
        "recon_error_start", "recon_error_end", "seconds"} per hidden layer]}``.

    Example:
        >>> from initlab import models
        >>> net = models.build("mlp", activation="sigmoid", width=16, depth=2)
        >>> x = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        >>> info = init.initialize(net, "dbn:images=300", generator=torch.Generator().manual_seed(0), data=x)
        >>> [r["hidden"] for r in info["rbm"]], info["pretrain_seconds"] > 0
        ([16, 16], True)
    """
    if data is None:
        raise ValueError("dbn needs training images: initialize(model, 'dbn', generator=g, data=x)")
    check_model(model)
    if images < 1 or epochs < 1 or batch_size < 1 or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"dbn needs images, epochs, batch_size >= 1 and lr > 0; got images={images}, "
                         f"epochs={epochs}, batch_size={batch_size}, lr={lr}")
    layers = list(init_layers(model))
    *hidden, (out_name, out) = layers
    param = hidden[0][1].weight
    x = data[:images].detach().flatten(1).to(device=param.device, dtype=param.dtype)   # (N, n_0)
    if x.shape[1] != hidden[0][1].in_features:
        raise ValueError(f"dbn: data has {x.shape[1]} features per image, layer {hidden[0][0]!r} "
                         f"takes {hidden[0][1].in_features}")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(f"dbn needs inputs in [0, 1] (Bernoulli visible units); train without {flag('normalize')}")
    t0 = time.perf_counter()
    rbms, infos = pretrain_stack(x, [m.out_features for _, m in hidden], generator=generator,
                                 epochs=epochs, batch_size=batch_size, lr=lr)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        for (name, m), rbm, info in zip(hidden, rbms, infos):
            m.weight.copy_(rbm.W)
            if m.bias is not None:
                m.bias.copy_(rbm.c)
            info["layer"] = name
        xavier(out.weight, generator=generator)
    return {"pretrain_seconds": seconds,
            "rbm": [{"layer": i.pop("layer"), **i} for i in infos]}


dbn.formula = "greedy CD-1 RBM per hidden layer (Hinton et al. 2006) -> weights and hidden biases; output xavier"  # type: ignore[attr-defined]
dbn.check_model = check_model  # type: ignore[attr-defined]
