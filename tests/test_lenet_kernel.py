"""The hand-written LeNet-5 stack against autograd on the nn.Module, model by model."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from initlab import engine, init, models
from initlab.engine import lenet_kernel, record


def _stack(M, activation="relu", c3_table=False, spec="kaiming"):
    ms = []
    for m in range(M):
        net = models.build("lenet5", activation=activation, c3_table=c3_table)
        init.initialize(net, spec, generator=torch.Generator().manual_seed(m))
        with torch.no_grad():                       # non-zero biases, so their gradients matter
            for layer in (net.c1, net.c3, net.c5, net.f6, net.output):
                layer.bias.uniform_(-0.1, 0.1)
        ms.append(net)
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in ms])
              for n, _ in ms[0].named_parameters()}
    grads = {n: torch.full_like(p, math.nan) for n, p in params.items()}   # must all be written
    mask = ms[0].c3_mask if c3_table else None
    return ms, lenet_kernel.LeNetKernel(params, grads, activation, mask), grads


def _autograd(net, x, y, smoothing=0.0):
    net.zero_grad()
    loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in net.named_parameters()}


# The kernel's gradients against autograd, for every activation in float32 and float64, on a batch
# where no unit sits at a kink: tests/test_cuda.py (its cpu variants run everywhere).


def test_c3_table_label_smoothing_and_model_weights():
    torch.manual_seed(1)
    ms, kernel, grads = _stack(3, c3_table=True)
    x, y = torch.rand(3, 8, 1, 28, 28), torch.randint(0, 10, (3, 8))
    weights = torch.tensor([1.0, 0.0, 2.0])
    kernel.loss_and_grad(x, y, weights=weights, label_smoothing=0.1)
    for m, net in enumerate(ms):
        _, ref = _autograd(net, x[m], y[m], smoothing=0.1)
        for name, g in ref.items():
            assert torch.allclose(grads[name][m], weights[m] * g, atol=1e-6, rtol=1e-4), (m, name)
    # the masked C3 connections get no gradient at all
    missing = (1 - ms[0].c3_mask).bool().expand(16, 6, 5, 5)
    assert (grads["c3.weight"][:, missing] == 0).all()


def test_a_nan_model_with_weight_zero_gets_zero_gradients_and_leaves_the_others_alone():
    torch.manual_seed(2)
    ms, kernel, grads = _stack(2)
    kernel.p["c1.weight"][1, 0, 0, 0, 0] = float("nan")
    x, y = torch.rand(1, 8, 1, 28, 28), torch.randint(0, 10, (1, 8))
    loss, _ = kernel.loss_and_grad(x, y, weights=torch.tensor([1.0, 0.0]))
    assert math.isnan(loss[1].item()) and math.isfinite(loss[0].item())
    _, ref = _autograd(ms[0], x[0], y[0])
    for name, g in ref.items():
        assert torch.allclose(grads[name][0], g, atol=1e-6, rtol=1e-4), name
        assert torch.isfinite(grads[name][0]).all()


def test_the_engine_uses_the_kernel_only_where_it_computes_the_same_model():
    assert lenet_kernel.supports(models.build("lenet5"))
    assert lenet_kernel.supports(models.build("lenet5", activation="tanh", c3_table=True))
    assert not lenet_kernel.supports(models.build("lenet5", pool="max"))
    assert not lenet_kernel.supports(models.build("mlp"))


def test_kernel_and_vmap_paths_give_the_same_training_and_records():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(320, 28, 28, generator=g) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (320,), generator=g)
    cfg = engine.TrainConfig(heldout_size=64, probe_size=16, record_every=4, hist_every=4)
    data = engine.prepare(images, labels, images[:100], labels[:100], cfg)
    nets = [[models.build("lenet5") for _ in range(2)] for _ in range(2)]
    for s, row in enumerate(nets):
        for i, net in enumerate(row):
            init.initialize(net, ["xavier", "kaiming"][i], generator=torch.Generator().manual_seed(s))
    twins = copy.deepcopy(nets)
    fast = engine.train_stack(nets, [0, 1], data, cfg)
    original = lenet_kernel.supports
    try:
        lenet_kernel.supports = lambda model: False           # force the general vmap path
        slow = engine.train_stack(twins, [0, 1], data, cfg)
    finally:
        lenet_kernel.supports = original
    assert torch.allclose(fast.step_losses, slow.step_losses, atol=1e-4)
    assert torch.allclose(fast.test_acc, slow.test_acc, atol=0.02)
    key = lambda r: (r["run"], r["step"], r["layer"])
    for a, b in zip(sorted(fast.records.layers, key=key), sorted(slow.records.layers, key=key)):
        assert key(a) == key(b)
        for stat in ("act_mean", "act_std", "dead_frac", "w_std", "grad_norm"):
            assert a[stat] == pytest.approx(b[stat], rel=2e-3, abs=1e-4, nan_ok=True), (key(a), stat)


def test_activation_stats_read_a_channels_last_stack_in_place():
    torch.manual_seed(3)
    S, I, P, C, H = 2, 3, 40, 4, 6
    memory = torch.randn(P, H, H, S, I, C) * 0.5
    memory[..., 0, 1, :] += 1000.0                           # a mean far above the spread
    memory[:, :2, :, 1, 2, 0] = -1.0                         # dead features of one model
    view = memory.permute(3, 4, 0, 5, 1, 2)                  # (S, I, P, C, H, W), not contiguous
    assert not view.is_contiguous()
    got = record.activation_stats(view, rectifier=True)
    flat = view.double().reshape(S, I, P, -1)
    assert torch.allclose(got["act_mean"].double(), flat.mean((2, 3)), rtol=1e-6)
    assert torch.allclose(got["act_std"].double(), flat.std((2, 3), correction=0), rtol=1e-4)
    assert torch.allclose(got["dead_frac"].double(), (flat <= 0).all(2).double().mean(-1))
    assert got["dead_frac"][1, 2] == pytest.approx(2 * H / (C * H * H))
    same = record.activation_stats(view.contiguous(), rectifier=True)
    for k in got:
        assert torch.allclose(got[k], same[k], rtol=1e-5), k
