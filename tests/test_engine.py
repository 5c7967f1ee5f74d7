import copy
import math

import pytest
import torch

from initlab import engine, init, models
from initlab.experiments.study import LAB_INITS


def _data(n=640, seed=0):
    g = torch.Generator().manual_seed(seed)
    # structured fake digits: class k lights row band k, plus noise, so models can learn something
    labels = torch.randint(0, 10, (n,), generator=g)
    images = (torch.rand(n, 28, 28, generator=g) * 60).to(torch.uint8)
    for k in range(10):
        images[labels == k, 2 * k + 4, :] = 255
    cfg = engine.TrainConfig(heldout_size=100, probe_size=32, record_every=8, hist_every=8)
    return engine.prepare(images, labels, images[:200], labels[:200], cfg), cfg


def _model(spec, seed):
    m = models.build("lenet5")
    init.initialize(m, spec, generator=torch.Generator().manual_seed(seed))
    return m


@pytest.mark.parametrize("spec", LAB_INITS)
def test_engine_matches_the_plain_loop_step_for_step(spec):
    data, cfg = _data()
    seeds = [3, 4]
    stack = [[_model(spec, s), _model("kaiming", s)] for s in seeds]
    reference = copy.deepcopy(stack[1][0])
    res = engine.train_stack(stack, seeds, data, cfg)
    ref_losses = engine.train_reference(reference, data, engine.data_order(640, seeds[1], 1), cfg)
    assert res.steps == len(ref_losses) == 20
    diff = (torch.tensor(ref_losses) - res.step_losses[:, 1, 0]).abs().max().item()
    # vmap batches the same maths into grouped convolutions: only the summation order differs
    assert diff < 1e-4 * max(1.0, max(abs(x) for x in ref_losses)), diff
    # and the trained weights are written back, equal to the reference model's
    for (name, p), q in zip(stack[1][0].named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-4, rtol=1e-3), name


SMALL_MODELS = {"lenet5": {}, "mlp": {"width": 16, "depth": 3}, "two_layer_fc": {"hidden": 32},
                "three_layer_convnet": {"channel_1": 4, "channel_2": 4}}
# the path each model's stack takes: the hand-written kernel, batched matrix products, or vmap
STACK_PATHS = {"lenet5": "kernel", "mlp": "chain", "two_layer_fc": "chain", "three_layer_convnet": "vmap"}


def test_every_model_has_a_small_form_and_a_known_stack_path():
    assert set(SMALL_MODELS) == set(models.MODELS) == set(STACK_PATHS)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_model_trains_in_a_stack_as_in_the_plain_loop(name):
    data, cfg = _data()
    seeds = [3, 4]

    def build(spec, seed):
        m = models.build(name, **SMALL_MODELS[name])
        init.initialize(m, spec, generator=torch.Generator().manual_seed(seed))
        return m

    stack = [[build("xavier", s), build("kaiming", s)] for s in seeds]
    reference = copy.deepcopy(stack[1][1])
    probe_model = copy.deepcopy(stack[0][1])
    built = engine.Stack(stack, "cpu")
    path = "kernel" if built.kernel is not None else "chain" if built.chain is not None else "vmap"
    assert path == STACK_PATHS[name]
    # every layer's output on shared images is the model's own forward's
    _, _, acts = built.evaluate(data.x_test[:40], data.y_test[:40], probe=40)
    _, own = probe_model(data.x_test[:40], return_activations=True)
    assert set(acts) == set(own)
    for layer, value in own.items():
        assert torch.allclose(acts[layer][0, 1], value, atol=1e-5, rtol=1e-4), layer
    res = engine.train_stack(stack, seeds, data, cfg)
    ref_losses = engine.train_reference(reference, data, engine.data_order(640, seeds[1], 1), cfg)
    diff = (torch.tensor(ref_losses) - res.step_losses[:, 1, 1]).abs().max().item()
    assert diff < 1e-4 * max(1.0, max(abs(x) for x in ref_losses)), diff
    for (layer, p), q in zip(stack[1][1].named_parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-4, rtol=1e-3), layer


def test_models_in_a_stack_do_not_influence_each_other_and_divergence_is_contained():
    data, cfg = _data()
    healthy = _model("kaiming", 0)
    broken = _model("kaiming", 1)
    with torch.no_grad():
        broken.c1.weight[0, 0, 0, 0] = float("nan")
    alone = copy.deepcopy(healthy)
    both = engine.train_stack([[copy.deepcopy(healthy), broken]], [0], data, cfg)
    solo = engine.train_stack([[alone]], [0], data, cfg)
    assert int(both.diverged_step[0, 1]) == 0
    assert int(both.diverged_step[0, 0]) == -1
    assert torch.allclose(both.step_losses[:, 0, 0], solo.step_losses[:, 0, 0], atol=1e-5)
    assert math.isclose(float(both.test_acc[0, 0]), float(solo.test_acc[0, 0]), abs_tol=1e-6)


def test_zero_init_never_leaves_zero_and_its_units_stay_identical():
    data, cfg = _data()
    m = _model("zeros", 0)
    res = engine.train_stack([[m]], [0], data, cfg)
    for name in ("c1", "c3", "c5", "f6", "output"):
        assert torch.count_nonzero(getattr(m, name).weight) == 0, name
    assert m.output.bias.abs().sum() > 0          # the class prior is the one thing it learns
    last = max(r["step"] for r in res.records.layers)
    distinct = {r["layer"]: r["distinct_units"] for r in res.records.layers if r["step"] == last}
    assert distinct == {"c1": 1, "c3": 1, "c5": 1, "f6": 1, "output": 10}
    grads = [r["grad_norm"] for r in res.records.layers if r["layer"] == "c1" and r["step"] < last]
    assert grads and all(g == 0 for g in grads)


def test_records_cover_the_schedule_and_histograms_keep_their_bins():
    data, cfg = _data()
    res = engine.train_stack([[_model("xavier", 0)]], [0], data, cfg)
    steps = sorted({r["step"] for r in res.records.curves})
    hist_steps = sorted({r["step"] for r in res.records.hists})
    # 8 moments spread over the 20 steps (each a record point too), the last after the final step
    assert hist_steps == [0, 3, 6, 9, 11, 14, 17, 20] and len(hist_steps) == cfg.hist_moments
    assert steps == sorted(set(engine.record_schedule(20, 8)) | set(hist_steps))
    cfg.hist_moments = 0                                        # the fixed interval instead
    res = engine.train_stack([[_model("xavier", 0)]], [0], data, cfg)
    assert sorted({r["step"] for r in res.records.hists}) == [0, 8, 16, 20]
    edges = {}
    for r in res.records.hists:
        edges.setdefault((r["layer"], r["step"]), []).append(r["bin_left"])
    assert edges[("c1", 0)] == edges[("c1", 20)]               # fixed bins per layer
    counts = [r["count"] for r in res.records.hists if r["layer"] == "c3" and r["step"] == 20]
    assert sum(counts) == 16 * 6 * 25                           # every weight counted once


@pytest.mark.parametrize("total", [3, 40, 157, 1875, 5625])
def test_histogram_moments_spread_over_any_run_length(total):
    cfg = engine.TrainConfig()
    steps = engine.training.hist_schedule(total, cfg) + [total]          # + the one after the last step
    assert len(steps) == min(cfg.hist_moments, total + 1) and steps[0] == 0
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) - min(gaps) <= 1                                  # evenly spread


def test_record_schedule_is_denser_early():
    assert engine.record_schedule(1875, 100)[:9] == [0, 25, 50, 75, 100, 125, 150, 175, 200]
    assert len(engine.record_schedule(1875, 100)) == 25


def test_data_order_is_a_seeded_permutation_and_train_size_keeps_one_subset():
    a, b = engine.data_order(100, 1, 2), engine.data_order(100, 1, 2)
    assert torch.equal(a, b) and sorted(a[:100].tolist()) == list(range(100))
    assert not torch.equal(a[:100], a[100:])                    # a fresh order every epoch
    s1, s2 = engine.data_order(100, 1, 1, train_size=10), engine.data_order(100, 2, 1, train_size=10)
    assert set(s1.tolist()) == set(s2.tolist()) and len(s1) == 10


def test_onecycle_schedule_warms_up_then_anneals():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = engine.TrainConfig(schedule="onecycle", lr=0.01, warmup=0.25)
    opt, sched = engine.make_optimizer([p], cfg, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.001 and abs(max(lrs) - 0.01) < 1e-6 and lrs.index(max(lrs)) == 24
    assert lrs[-1] < 1e-4


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_a_model_gets_the_same_bits_at_the_same_place_in_any_stack(name):
    """On one thread a model's result depends on its place in its stack (the summation order of the
    batched kernels), not on what else is stacked beside it: at the front of a stack of 2 inits, of 3
    inits or of 2 seeds it ends bit for bit the same; elsewhere (alone, second) it ends within
    rounding of that (README: "Same seeds, same numbers")."""
    data, cfg = _data()
    cfg.record = False
    before = torch.get_num_threads()
    torch.set_num_threads(1)

    def build(spec, seed):
        m = models.build(name, **SMALL_MODELS[name])
        init.initialize(m, spec, generator=torch.Generator().manual_seed(seed))
        return m

    def trained(layout, where):
        stack = [[build(spec, seed) for spec in specs] for seed, specs in layout]
        engine.train_stack(stack, [seed for seed, _ in layout], data, cfg)
        s, i = where
        return torch.cat([p.detach().flatten() for p in stack[s][i].parameters()])

    try:
        front = [trained([(3, ["kaiming", "xavier"])], (0, 0)),
                 trained([(3, ["kaiming", "zeros", "normal"])], (0, 0)),
                 trained([(3, ["kaiming"]), (4, ["kaiming"])], (0, 0))]
        elsewhere = [trained([(3, ["kaiming"])], (0, 0)), trained([(3, ["xavier", "kaiming"])], (0, 1))]
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(front[0], w) for w in front[1:])
    for w in elsewhere:
        assert torch.allclose(front[0], w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("alpha", [1.0, 0.25])
@pytest.mark.parametrize("out_features, in_features", [(10, 1024), (64, 784), (256, 256), (1024, 1024),
                                                       (32, 10), (16, 64)])
def test_a_stacked_linear_layer_has_autograds_gradients_bit_for_bit(out_features, in_features, alpha):
    """The chain's layer writes W's gradient in W's layout: the same bits as autograd's ``baddbmm``
    backward (which leaves it transposed), on both sides of ``DIRECT_GRADIENT_MIN``, on one thread."""
    from initlab.engine.linear_chain import StackedLinear

    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 32, in_features, generator=g)
    w = torch.randn(3, out_features, in_features, generator=g)
    b = torch.randn(3, 1, out_features, generator=g)
    upstream = torch.randn(3, 32, out_features, generator=g)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        grads = []
        for layer in (lambda *a: torch.baddbmm(a[2], a[0], a[1].transpose(1, 2), alpha=alpha),
                      lambda *a: StackedLinear.apply(*a, alpha)):
            inputs = [t.clone().requires_grad_() for t in (h, w, b)]
            out = layer(*inputs)
            out.backward(upstream)
            grads.append((out.detach(), *[t.grad for t in inputs]))
    finally:
        torch.set_num_threads(before)
    for ours, theirs in zip(grads[1], grads[0]):
        assert torch.equal(ours, theirs)
    assert grads[1][2].is_contiguous()                                   # no copy left for AccumulateGrad
