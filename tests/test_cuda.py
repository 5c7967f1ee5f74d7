"""The engine's checks on every device: ``cpu`` always, ``cuda`` where torch sees a GPU.

The ``cuda`` variants carry the ``cuda`` marker and are skipped without a GPU, so CI never needs one;
``pytest -m cuda tests/test_cuda.py`` runs just them (``benchmarks/gpu_check.py`` does, on a GPU
machine). The helpers, fake digits and tolerances are those of ``test_lenet_kernel`` and
``test_engine``; here the kernel, the stack and the reference loop run on the device under test.

On the GPU these compare full float32 arithmetic: cuDNN's convolutions default to TF32 (a 10-bit
mantissa, errors ~1e-3), which would hide a real error behind the rounding, so the ``device``
fixture turns TF32 off for the test and restores it after.
"""
import copy
import dataclasses
import math

import pytest
import torch
from test_engine import _data, _model
from test_lenet_kernel import _autograd, _stack

from initlab import engine
from initlab.engine import lenet_kernel
from initlab.experiments.study import LAB_INITS

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, NO_CUDA])])
def device(request):
    if request.param == "cpu":
        yield torch.device("cpu")
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield torch.device("cuda")
        torch.cuda.synchronize()                 # an asynchronous CUDA error fails this test
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _kernel_on(device, M, activation="relu", c3_table=False, dtype=torch.float32):
    """``test_lenet_kernel._stack``'s models and a kernel over copies of their parameters, all on
    ``device`` in ``dtype``, with NaN-filled gradients that the kernel must overwrite."""
    ms, kernel, _ = _stack(M, activation, c3_table)
    params = {n: p.to(device, dtype) for n, p in kernel.p.items()}
    grads = {n: torch.full_like(p, math.nan) for n, p in params.items()}
    mask = None if kernel.c3_mask is None else kernel.c3_mask.to(device, dtype)
    ms = [m.to(device, dtype) for m in ms]
    return ms, lenet_kernel.LeNetKernel(params, grads, activation, mask), grads


def _same_branches(kernel, ms, x, k) -> bool:
    """Whether every unit of every model is on the same side of 0 in the kernel as in the module.
    At a kink (ReLU's 0) two correct float32 computations can land on opposite sides of a
    pre-activation within rounding of 0 (seen here: 5e-9, a 0.8 % change of one C3 gradient); the
    gradients are then both right and different, so such a draw tests nothing."""
    _, acts = kernel.forward(x)
    for m, net in enumerate(ms):
        _, ref = net(x[m // k], return_activations=True)
        for name in ("c1", "c3", "c5", "f6"):
            a = acts[name]
            mine = lenet_kernel.LeNetKernel.per_model(a, kernel.M)[m] if a.dim() == 4 else a[m]
            if not torch.equal(mine > 0, ref[name] > 0):
                return False
    return True


def _batches(device, dtype, kernel, ms, G, B):
    """Images (G, B, 1, 28, 28) and labels (G, B) on ``device``: the first seeded draw on which
    the kernel and the modules take the same branches everywhere."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(G, B, 1, 28, 28, generator=g).to(device, dtype)
        y = torch.randint(0, 10, (G, B), generator=g).to(device)
        if _same_branches(kernel, ms, x, kernel.M // G):
            return x, y
    pytest.fail("20 draws, each with a unit at a kink: the forwards disagree beyond rounding")


def _on(data: engine.TrainData, device) -> engine.TrainData:
    return dataclasses.replace(data, **{f.name: getattr(data, f.name).to(device)
                                        for f in dataclasses.fields(data)})


# ---- the LeNet kernel's gradients against autograd on the nn.Module ----------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("activation", sorted(lenet_kernel.ACTIVATION_GRADS))
def test_kernel_gradients_equal_autograd(device, activation, dtype):
    """float32 is what training runs (cuDNN's channels-last kernels on a GPU); float64 checks the
    maths to 1e-10, where rounding cannot hide an error."""
    torch.manual_seed(0)
    G, k, B = 2, 2, 16                  # two batches, each shared by two models
    ms, kernel, grads = _kernel_on(device, G * k, activation, dtype=dtype)
    x, y = _batches(device, dtype, kernel, ms, G, B)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    loss, logits = kernel.loss_and_grad(x, y)
    for m, net in enumerate(ms):
        ref_loss, ref = _autograd(net, x[m // k], y[m // k])
        assert loss[m].item() == pytest.approx(ref_loss, rel=tol / 10)
        assert torch.allclose(logits[m], net(x[m // k]), atol=tol / 10, rtol=0)
        for name, g in ref.items():
            assert grads[name].device.type == device.type and grads[name].dtype == dtype
            scale = g.abs().max().item() or 1.0
            err = (grads[name][m] - g).abs().max().item() / scale
            assert err < tol, (activation, m, name, err)


def test_kernel_c3_table_label_smoothing_and_a_masked_nan_model(device):
    torch.manual_seed(1)
    dtype = torch.float64                  # exact maths (no kink ambiguity); float32: the engine's
    ms, kernel, grads = _kernel_on(device, 3, c3_table=True, dtype=dtype)
    kernel.p["c1.weight"][1, 0, 0, 0, 0] = math.nan          # model 1 diverged: weight 0 masks it
    x = torch.rand(3, 8, 1, 28, 28, device=device, dtype=dtype)
    y = torch.randint(0, 10, (3, 8), device=device)
    weights = torch.tensor([1.0, 0.0, 2.0], device=device)
    loss, _ = kernel.loss_and_grad(x, y, weights=weights, label_smoothing=0.1)
    assert math.isnan(loss[1].item()) and math.isfinite(loss[0].item())
    for m in (0, 2):
        _, ref = _autograd(ms[m], x[m], y[m], smoothing=0.1)
        for name, g in ref.items():
            assert torch.isfinite(grads[name][m]).all(), (m, name)       # the NaN stays in model 1
            assert torch.allclose(grads[name][m], weights[m] * g, atol=1e-12, rtol=1e-9), (m, name)
    missing = (1 - ms[0].c3_mask).bool().expand(16, 6, 5, 5)
    assert (grads["c3.weight"][[0, 2]][:, missing] == 0).all()


# ---- the engine against the plain one-model loop, step by step -------------------------------

def _engine_matches_the_plain_loop(device, spec):
    """``test_engine``'s comparison on ``device``: a 2 seeds x 2 inits stack against the plain
    loop on one of its models, every step's loss and the trained weights."""
    data, cfg = _data()
    data = _on(data, device)
    seeds = [3, 4]
    stack = [[_model(spec, s), _model("kaiming", s)] for s in seeds]
    reference = copy.deepcopy(stack[1][0]).to(device)
    res = engine.train_stack(stack, seeds, data, cfg)
    ref_losses = engine.train_reference(reference, data, engine.data_order(640, seeds[1], 1), cfg)
    assert res.steps == len(ref_losses) == 20
    assert res.step_losses.shape == (20, 2, 2) and torch.isfinite(res.step_losses).all()
    diff = (torch.tensor(ref_losses) - res.step_losses[:, 1, 0]).abs().max().item()
    assert diff < 1e-4 * max(1.0, max(abs(x) for x in ref_losses)), diff
    for (name, p), q in zip(stack[1][0].named_parameters(), reference.parameters()):
        assert torch.allclose(p, q.cpu(), atol=1e-4, rtol=1e-3), name
    assert res.records.curves and res.records.layers and res.records.hists
    return res


@pytest.mark.parametrize("spec", LAB_INITS)
def test_engine_matches_the_plain_loop_step_for_step(device, spec):
    _engine_matches_the_plain_loop(device, spec)


def test_vmap_path_matches_the_plain_loop_step_for_step(device, monkeypatch):
    monkeypatch.setattr(lenet_kernel, "supports", lambda model: False)   # force torch.func.vmap
    _engine_matches_the_plain_loop(device, "xavier")


# ---- a stack with a diverged model: masked, the others untouched ------------------------------

def test_a_diverged_model_is_masked_and_leaves_its_stack_alone(device):
    data, cfg = _data()
    data = _on(data, device)
    healthy, broken = _model("kaiming", 0), _model("kaiming", 1)
    with torch.no_grad():
        broken.c1.weight[0, 0, 0, 0] = math.nan
    pair = [[copy.deepcopy(healthy), broken]]
    both = engine.train_stack(pair, [0], data, cfg)
    alone = [[copy.deepcopy(healthy)]]
    solo = engine.train_stack(alone, [0], data, cfg)
    assert both.diverged_step.tolist() == [[-1, 0]] and solo.diverged_step.tolist() == [[-1]]
    assert torch.isfinite(both.step_losses[:, 0, 0]).all()
    assert torch.isnan(both.step_losses[:, 0, 1]).all()
    # the NaN model is masked out of the sum: its neighbour trains exactly as it does alone
    assert torch.allclose(both.step_losses[:, 0, 0], solo.step_losses[:, 0, 0], atol=1e-5)
    assert math.isclose(float(both.test_acc[0, 0]), float(solo.test_acc[0, 0]), abs_tol=1e-6)
    for p, q in zip(pair[0][0].parameters(), alone[0][0].parameters()):
        assert torch.isfinite(p).all() and torch.allclose(p, q, atol=1e-5)
