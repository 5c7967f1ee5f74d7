"""The speed work holds to the plain computation: the engine's optimizer is torch.optim's bit for bit,
the kernel's pool backward is the broadcast one bit for bit, training imports no torch._dynamo, and the
thread and process choices follow the measurement they are given."""
import subprocess
import sys

import pytest
import torch

from initlab import engine, models
from initlab.engine import lenet_kernel
from initlab.engine import threads as tr
from initlab.experiments import study


@pytest.mark.parametrize("optimizer", engine.OPTIMIZERS)
@pytest.mark.parametrize("schedule", engine.SCHEDULES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_stack_optimizer_is_torch_optim_bit_for_bit(optimizer, schedule, weight_decay):
    cfg = engine.TrainConfig(optimizer=optimizer, schedule=schedule, weight_decay=weight_decay, lr=0.01)
    g = torch.Generator().manual_seed(0)
    ref = [torch.randn(3, 4, generator=g).requires_grad_(), torch.randn(5, generator=g).requires_grad_()]
    mine = [t.detach().clone().requires_grad_() for t in ref]
    opt, sched = engine.make_optimizer(ref, cfg, 40)
    fast = engine.StackOptimizer(mine, cfg, 40)
    for _ in range(40):
        grads = [torch.randn(t.shape, generator=g) for t in ref]
        for a, b, d in zip(ref, mine, grads):
            a.grad, b.grad = d.clone(), d.clone()
        opt.step()
        fast.step()
        if sched is not None:
            sched.step()
    assert all(torch.equal(a, b) for a, b in zip(ref, mine))


def test_onecycle_lrs_are_torchs_floats():
    cfg = engine.TrainConfig(schedule="onecycle", lr=0.01, warmup=0.3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt, sched = engine.make_optimizer([p], cfg, 97)
    theirs = []
    for _ in range(97):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert engine.onecycle_lrs(cfg, 97) == theirs


def test_training_imports_no_dynamo():
    """torch.optim imports torch._dynamo (~1 s) when an optimizer is built; the engine's does not."""
    code = ("import sys, torch; from initlab import engine, models; "
            "torch.set_num_threads(1); "
            "x = torch.randint(0, 255, (64, 28, 28), dtype=torch.uint8); y = torch.randint(0, 10, (64,)); "
            "cfg = engine.TrainConfig(heldout_size=32, probe_size=16, record_every=1); "
            "d = engine.prepare(x, y, x, y, cfg); "
            "engine.train_stack([[models.build('lenet5')]], [0], d, cfg); "
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("activation", sorted(lenet_kernel.ACTIVATION_GRADS))
@pytest.mark.parametrize("shape", [(32, 6, 28, 28), (7, 48, 10, 10)])
def test_pool_activation_backward_is_the_broadcast_one_bit_for_bit(activation, shape):
    """The kernel's C1/C3 backward through the pool's own backward equals spreading g/4 over each
    2x2 window of a broadcast view, times act'(y): the same numbers, signs of zero included."""
    g = torch.Generator().manual_seed(1)
    B, C, H, W = shape
    kernel = lenet_kernel.LeNetKernel({"c1.weight": torch.zeros(1, 6, 1, 5, 5)}, {}, activation)
    a = kernel.act(torch.randn(shape, generator=g)).contiguous(memory_format=torch.channels_last)
    up = torch.randn(B, C, H // 2, W // 2, generator=g).contiguous(memory_format=torch.channels_last)
    spread = (up * 0.25).permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(B, H // 2, 2, W // 2, 2, C)
    y = a.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C)
    expected = kernel.act_grad(spread, y).reshape(B, H, W, C).permute(0, 3, 1, 2)
    got = kernel._pool_act_grad(up, a)
    assert torch.equal(got, expected) and torch.equal(torch.signbit(got), torch.signbit(expected))
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_the_padded_input_buffer_is_reused_and_keeps_its_border():
    kernel = engine.Stack([[models.build("lenet5")]], "cpu").kernel
    g = torch.Generator().manual_seed(2)
    first = kernel._input(torch.rand(1, 4, 1, 28, 28, generator=g) + 1)
    x = torch.rand(1, 4, 1, 28, 28, generator=g) + 1
    second = kernel._input(x)
    assert second.data_ptr() == first.data_ptr()
    assert torch.equal(second[:, :, 2:30, 2:30], x[0])
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (second[:, :, border] == 0).all()


@pytest.mark.parametrize("others, threads", [(0.0, 2), (0.2, 2), (0.3, 1), (1.0, 1), (1.9, 1)])
def test_the_governor_keeps_a_thread_only_where_a_core_is_idle(monkeypatch, others, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(tr, "cpu_cores", lambda: 2)
        monkeypatch.setattr(tr, "busy_elsewhere", lambda since, window=0.2: others)
        gov = tr.ThreadGovernor().start()
        assert gov.threads == threads == torch.get_num_threads()
        monkeypatch.setattr(tr, "busy_elsewhere", lambda since, window=0.2: 0.0)
        gov._last = (gov._last[0] - 10, *gov._last[1:])                # a second has passed
        gov.tick()
        assert gov.threads == 2 and gov.used == {threads, 2}
        gov.stop()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_governor_leaves_one_thread_alone(monkeypatch):
    monkeypatch.setattr(tr, "busy_elsewhere", lambda since, window=0.2: pytest.fail("measured"))
    assert torch.get_num_threads() == 1                                  # the suite's setting
    gov = tr.ThreadGovernor().start()
    gov.tick()
    gov.stop()
    assert gov.used == {1}


def test_busy_elsewhere_reads_this_machine():
    if tr.cpu_reading() is None:
        pytest.skip("no /proc/stat here")
    busy = engine.busy_elsewhere(None, window=0.05)
    assert 0.0 <= busy <= engine.cpu_cores() + 0.5


@pytest.mark.parametrize("workers, n_models, expected", [(0, 1, 1), (0, 15, 4), (4, 3, 1), (2, 2, 2),
                                                         (1, 50, 1), (3, 50, 3)])
def test_fewer_models_than_workers_train_in_this_process(monkeypatch, workers, n_models, expected):
    monkeypatch.setattr(study, "default_workers", lambda device: 4)
    assert study.processes(workers, n_models, torch.device("cpu")) == expected
