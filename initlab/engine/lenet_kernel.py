"""LeNet-5 for a stack of M models, forward and backward written out by hand.

The engine's general path (``torch.func.vmap`` over stacked parameters, autograd for the gradient)
works for any model. For LeNet-5 -- the study's model -- this module does the same maths in fewer,
larger operations, which is what makes a batch-32 step cheap on a CPU:

- the M models live side by side in the channel dimension of one ``channels_last`` tensor, and each
  convolution is one grouped convolution (groups = M), so oneDNN's fast kernels see one call per layer;
- an activation's derivative is taken from its output, so the pre-activation tensors are never kept;
  the 2x2 average pool's backward and the activation's backward are one fused pass
  (``threshold_backward`` on a broadcast view, for ReLU); the pool itself is two strided adds;
- C5, F6 and the output layer are batched matrix products (``baddbmm``) over the models;
- the loss gradient is written down directly: d(mean cross-entropy)/d logits = (softmax - target) / B.

Shapes: ``x`` is (G, B, 1, 28, 28): G batches, each shared by M / G consecutive models (G = M: every
model its own batch; G = 1: one batch for all). Sharing makes C1 one convolution per batch.
Parameters are keyed by the ``nn.Module`` names, each (M, *shape); ``loss_and_grad`` writes the
gradients into caller-owned tensors of the same shapes. Nothing here builds an autograd graph.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from initlab.models import LeNet5

CL = torch.channels_last
_conv_backward = torch.ops.aten.convolution_backward
_upsample = torch.ops.aten.upsample_nearest2d
_relu_grad_into = torch.ops.aten.threshold_backward.grad_input


def _leaky_grad(slope: float) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda g, y: torch.where(y > 0, g, g * slope)


_SCALE = 1.7159
# d act / d x as a function of the output y, applied to an upstream gradient g: g * f'(x).
ACTIVATION_GRADS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "relu": lambda g, y: torch.ops.aten.threshold_backward(g, y, 0.0),
    "leaky_relu": _leaky_grad(0.01),
    "very_leaky_relu": _leaky_grad(0.33),
    "tanh": lambda g, y: g * (1 - y * y),
    "scaled_tanh": lambda g, y: g * ((2.0 / 3.0) * (_SCALE - y * y / _SCALE)),
    "sigmoid": lambda g, y: g * (y * (1 - y)),
    "selu": lambda g, y: torch.where(y > 0, g * 1.0507009873554805, g * (y + 1.7580993408473766)),
}


def supports(model) -> bool:
    """True for a LeNet-5 this kernel computes exactly: average pooling, a known activation."""
    return (type(model) is LeNet5 and model.pool == "avg"
            and model.activation in ACTIVATION_GRADS)


class LeNetKernel:
    """Forward and backward of M stacked LeNet-5s. ``params`` and ``grads`` map a parameter name to
    an (M, ...) tensor (views of the engine's (S, I, ...) stack are fine)."""

    def __init__(self, params: Dict[str, Tensor], grads: Dict[str, Tensor], activation: str,
                 c3_mask: Optional[Tensor] = None):
        self.p, self.g = params, grads
        self.M = params["c1.weight"].shape[0]
        self.act_name, self.act = activation, _ACT_FNS[activation]
        self.act_grad = ACTIVATION_GRADS[activation]
        self.c3_mask = c3_mask          # (16, 6, 1, 1) or None
        self._padded: Dict[tuple, Tensor] = {}   # zero-bordered input buffers, by shape

    # ---- forward ------------------------------------------------------------------------------

    def _input(self, x: Tensor) -> Tensor:
        """(G, B, 1, 28, 28) -> zero-padded (B, G, 32, 32), channels_last. The buffer is kept per
        shape (training sees one or two; evaluation a few chunk sizes): its border stays zero, so
        each call only copies the images in. It is overwritten by the next call of that shape."""
        if x.dim() != 5 or x.shape[2:] != (1, 28, 28):
            raise ValueError(f"LeNet-5 takes (G, B, 1, 28, 28) images; got {tuple(x.shape)}")
        G, B = x.shape[:2]
        key = (G, B, x.dtype, x.device)
        xin = self._padded.get(key)
        if xin is None:
            if len(self._padded) >= 8:
                self._padded.clear()
            xin = self._padded[key] = torch.zeros(B, 32, 32, G, dtype=x.dtype, device=x.device)
        xin[:, 2:30, 2:30].copy_(x[:, :, 0].permute(1, 2, 3, 0))
        return xin.permute(0, 3, 1, 2)

    def _c3_weight(self) -> Tensor:
        """C3's weight as the grouped convolution takes it, (16M, 6, 5, 5), masked by the C3 table if
        any, in channels_last (the layout oneDNN would otherwise convert it to, in the forward and
        again in the backward)."""
        w = self.p["c3.weight"].reshape(self.M * 16, 6, 5, 5)
        if self.c3_mask is not None:
            w = w * self.c3_mask.repeat(self.M, 1, 1, 1)
        return w.contiguous(memory_format=CL)

    @torch.no_grad()
    def forward(self, x: Tensor, keep: bool = False) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Logits (M, B, 10) and the post-activation outputs by layer: c1/c3 as (B, M*C, H, W)
        channels_last (see ``per_model``), c5/f6/output as (M, B, F). With ``keep`` the second
        value is instead what the backward needs."""
        p, M, f = self.p, self.M, self.act
        if M % x.shape[0]:
            raise ValueError(f"{x.shape[0]} batches cannot be shared evenly by {M} models")
        xin = self._input(x)
        B = xin.shape[0]
        a1 = f(F.conv2d(xin, p["c1.weight"].reshape(M * 6, 1, 5, 5), p["c1.bias"].reshape(-1),
                        groups=x.shape[0]))                                  # (B, 6M, 28, 28) CL
        s2 = _avg_pool(a1)                                                   # (B, 6M, 14, 14)
        w3 = self._c3_weight()
        a3 = f(F.conv2d(s2, w3, p["c3.bias"].reshape(-1), groups=M))        # (B, 16M, 10, 10)
        s4 = _avg_pool(a3)                                                   # (B, 16M, 5, 5) CL
        # (B, 5, 5, M, 16) in memory -> (M, B, 16*5*5) in C5's weight order
        h = s4.permute(0, 2, 3, 1).reshape(B, 25, M, 16).permute(2, 0, 3, 1).reshape(M, B, 400)
        a5 = f(torch.baddbmm(p["c5.bias"][:, None], h, p["c5.weight"].reshape(M, 120, 400).mT))
        a6 = f(torch.baddbmm(p["f6.bias"][:, None], a5, p["f6.weight"].mT))
        logits = torch.baddbmm(p["output.bias"][:, None], a6, p["output.weight"].mT)
        if keep:
            return logits, {"xin": xin, "a1": a1, "s2": s2, "w3": w3, "a3": a3, "h": h, "a5": a5,
                            "a6": a6}
        return logits, {"c1": a1, "c3": a3, "c5": a5, "f6": a6, "output": logits}

    @staticmethod
    def per_model(t: Tensor, M: int) -> Tensor:
        """A (B, M*C, H, W) activation -> (M, B, C, H, W), the layout the records expect."""
        B, MC, H, W = t.shape
        return t.reshape(B, M, MC // M, H, W).transpose(0, 1)

    # ---- backward -----------------------------------------------------------------------------

    def _pool_act_grad(self, g_pooled: Tensor, a: Tensor) -> Tensor:
        """Gradient at the pre-activation of ``a`` (B, C, H, W) CL from the gradient at its 2x2
        average pool (B, C, H/2, W/2) CL: g/4 copied to each 2x2 window (nearest-neighbour upsampling,
        vectorized over channels_last), times act'(.) (for ReLU in place). 3-4x faster for C1 than one
        pass over a broadcast view, whose innermost dimension is only 6M long."""
        g = _upsample(g_pooled * 0.25, [a.shape[2], a.shape[3]])           # (B, C, H, W) CL
        if self.act_name == "relu":
            return _relu_grad_into(g, a, 0.0, grad_input=g)
        return self.act_grad(g, a)

    @torch.no_grad()
    def loss_and_grad(self, x: Tensor, y: Tensor, weights: Optional[Tensor] = None,
                      label_smoothing: float = 0.0) -> Tuple[Tensor, Tensor]:
        """Per-model mean cross-entropy (M,) and logits (M, B, 10) for images ``x`` (G, B, 1, 28, 28)
        and labels ``y`` (G, B); writes d(sum_m weights[m] * loss[m]) / d params into every
        ``grads``. ``weights`` (M,) defaults to ones; a model with weight 0 gets zero gradients
        (even when its loss is not finite)."""
        p, grads, M, ag = self.p, self.g, self.M, self.act_grad
        logits, s = self.forward(x, keep=True)
        B = logits.shape[1]
        if y.shape[0] != M:
            y = y.repeat_interleave(M // y.shape[0], dim=0)                         # (M, B)
        logp = torch.log_softmax(logits, -1)
        target = torch.zeros_like(logp).scatter_(-1, y[..., None], 1.0)
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
        loss = -(target * logp).sum(-1).mean(-1)                                    # (M,)
        d_logits = (logp.exp() - target).div_(B)                                   # (M, B, 10)
        if weights is not None:
            w = weights.to(logits)[:, None, None]
            d_logits = torch.where(w != 0, d_logits * w, torch.zeros_like(d_logits))

        def linear_grad(name, d_out, inp):      # written straight into the gradient tensors
            w = grads[name + ".weight"]
            torch.bmm(d_out.mT, inp, out=w.view(M, w.shape[1], -1))
            torch.sum(d_out, 1, out=grads[name + ".bias"])

        linear_grad("output", d_logits, s["a6"])
        d6 = ag(torch.bmm(d_logits, p["output.weight"]), s["a6"])
        linear_grad("f6", d6, s["a5"])
        d5 = ag(torch.bmm(d6, p["f6.weight"]), s["a5"])
        linear_grad("c5", d5, s["h"])
        dh = torch.bmm(d5, p["c5.weight"].reshape(M, 120, 400))                     # (M, B, 400)
        # back to S4's channels_last layout: (M, B, 16, 25) -> memory (B, 5, 5, M, 16); for M = 1 the
        # reshape is a view in NCHW order, and everything downstream would follow it (three layout
        # copies of C3's gradient per step, one inside the convolution's backward)
        ds4 = dh.view(M, B, 16, 25).permute(1, 3, 0, 2).reshape(B, 5, 5, M * 16).permute(0, 3, 1, 2)
        ds4 = ds4.contiguous(memory_format=CL)
        d3 = self._pool_act_grad(ds4, s["a3"])
        ds2, dw3, db3 = _conv_backward(d3, s["s2"], s["w3"], [M * 16], [1, 1], [0, 0],
                                       [1, 1], False, [0, 0], M, [True, True, True])
        dw3 = dw3.view(M, 16, 6, 5, 5)
        if self.c3_mask is not None:
            dw3 = dw3 * self.c3_mask
        grads["c3.weight"].copy_(dw3)
        grads["c3.bias"].copy_(db3.view(M, 16))
        d1 = self._pool_act_grad(ds2, s["a1"])
        _, dw1, db1 = _conv_backward(d1, s["xin"], p["c1.weight"].reshape(M * 6, 1, 5, 5), [M * 6],
                                     [1, 1], [0, 0], [1, 1], False, [0, 0], s["xin"].shape[1],
                                     [False, True, True])
        grads["c1.weight"].copy_(dw1.view(M, 6, 1, 5, 5))
        grads["c1.bias"].copy_(db1.view(M, 6))
        return loss, logits


def _avg_pool(a: Tensor) -> Tensor:
    """2x2 average pooling of a channels_last (B, C, H, W) tensor as two strided adds (rows, then
    columns): ~1.4x faster than ``F.avg_pool2d`` on these shapes."""
    B, C, H, W = a.shape
    v = a.permute(0, 2, 3, 1).view(B, H // 2, 2, W, C)
    rows = (v[:, :, 0] + v[:, :, 1]).view(B, H // 2, W // 2, 2, C)
    return (rows[:, :, :, 0] + rows[:, :, :, 1]).mul_(0.25).permute(0, 3, 1, 2)


def _scaled_tanh(x: Tensor) -> Tensor:
    return torch.tanh(x * (2.0 / 3.0)).mul_(_SCALE)


_ACT_FNS: Dict[str, Callable[[Tensor], Tensor]] = {
    "relu": lambda x: x.relu_(),
    "leaky_relu": lambda x: F.leaky_relu_(x, 0.01),
    "very_leaky_relu": lambda x: F.leaky_relu_(x, 0.33),
    "tanh": lambda x: x.tanh_(),
    "scaled_tanh": _scaled_tanh,
    "sigmoid": lambda x: x.sigmoid_(),
    "selu": lambda x: F.selu(x, inplace=True),
}
