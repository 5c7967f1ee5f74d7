"""The CS231n models (two_layer_fc, three_layer_convnet in three forms) and the model registry as a whole:
every registered model keeps the contract and trains under every registered init on real data."""
import copy

import pytest
import torch
import torch.nn.functional as F

from initlab import engine, init, models
from initlab.data import load_dataset
from initlab.models.convnets import FORMS, ThreeLayerConvNetBarebones, three_layer_convnet_fn

SHAPES = [(1, 28), (3, 32)]   # MNIST, CIFAR-10


def _inputs(c, size, n=5, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- the registry contract


@pytest.mark.parametrize("name", models.MODELS.names())
def test_every_model_keeps_the_contract(name):
    m = models.build(name)
    logits, acts = m(_inputs(1, 28), return_activations=True)
    assert logits.shape == (5, 10)
    assert torch.equal(m(_inputs(1, 28)), logits)
    layers = [n for n, _ in models.weight_layers(m)]
    assert set(acts) == set(layers), "activation keys must be the Conv/Linear module names"
    assert torch.equal(acts[layers[-1]], logits)
    assert m.act.name == "relu" and m.act.rectifier


@pytest.mark.parametrize("c,size", SHAPES)
def test_shapes_and_parameter_counts(c, size):
    fc = models.build("two_layer_fc", in_channels=c, image_size=size)
    assert models.count_parameters(fc) == c * size * size * 4000 + 4000 + 4000 * 10 + 10
    assert fc(_inputs(c, size)).shape == (5, 10)
    for form in FORMS:
        net = models.build("three_layer_convnet", in_channels=c, image_size=size, form=form)
        # conv1 32@5x5 (+32), conv2 16@3x3 over 32 (+16), fc over 16 x size x size (+10)
        expected = 32 * c * 25 + 32 + 16 * 32 * 9 + 16 + 16 * size * size * 10 + 10
        assert models.count_parameters(net) == expected
        _, acts = net(_inputs(c, size), return_activations=True)
        assert acts["conv1"].shape == (5, 32, size, size)   # padding keeps the size
        assert acts["conv2"].shape == (5, 16, size, size)
    assert models.count_parameters(models.build("three_layer_convnet", channel_1=8, channel_2=4)) == \
        8 * 25 + 8 + 4 * 8 * 9 + 4 + 4 * 28 * 28 * 10 + 10


def test_unknown_form_lists_the_forms():
    with pytest.raises(ValueError, match="module, sequential, barebones"):
        models.build("three_layer_convnet", form="functional")


# ---------------------------------------------------------------- three forms, one function


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize("c,size", SHAPES)
def test_three_forms_compute_the_same_function(c, size, activation):
    nets = {f: models.build("three_layer_convnet", activation=activation, in_channels=c,
                            image_size=size, form=f) for f in FORMS}
    init.initialize(nets["module"], "kaiming", generator=torch.Generator().manual_seed(1),
                    activation=activation, bias=0.1)
    for f in ("sequential", "barebones"):
        nets[f].load_state_dict(nets["module"].state_dict())   # same names, same shapes
    x = _inputs(c, size, n=7)
    ref_logits, ref_acts = nets["module"](x, return_activations=True)
    assert ref_logits.abs().max() > 0.1                          # not a trivially equal zero output
    for f in ("sequential", "barebones"):
        logits, acts = nets[f](x, return_activations=True)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)
        assert acts.keys() == ref_acts.keys()
        for k in acts:
            torch.testing.assert_close(acts[k], ref_acts[k], rtol=1e-5, atol=1e-6)
    # the bare function on the bare tensors, and the same gradient through every form
    fn_logits = three_layer_convnet_fn(x, nets["barebones"].params(), nets["module"].act.fn)
    torch.testing.assert_close(fn_logits, ref_logits, rtol=1e-5, atol=1e-6)
    y = torch.arange(7) % 10
    grads = {}
    for f, net in nets.items():
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        grads[f] = {n: p.grad.clone() for n, p in net.named_parameters()}
    for f in ("sequential", "barebones"):
        for n in grads["module"]:
            torch.testing.assert_close(grads[f][n], grads["module"][n], rtol=1e-4, atol=1e-6)


def test_function_matches_cs231n_layout():
    """CS231n's barebones net stores fc_w as (in, out) and computes x.mm(fc_w) + fc_b; ours takes
    PyTorch's (out, in) layout -- check the two agree on the transpose."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g)
    w1, b1 = torch.randn(6, 3, 5, 5, generator=g), torch.randn(6, generator=g)
    w2, b2 = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, generator=g)
    fc_w_cs231n, fc_b = torch.randn(4 * 8 * 8, 10, generator=g), torch.randn(10, generator=g)
    h = F.relu(F.conv2d(F.relu(F.conv2d(x, w1, b1, padding=2)), w2, b2, padding=1))
    expected = h.flatten(1).mm(fc_w_cs231n) + fc_b
    got = three_layer_convnet_fn(x, (w1, b1, w2, b2, fc_w_cs231n.t(), fc_b))
    torch.testing.assert_close(got, expected)


def test_same_seed_same_initial_weights_in_every_form():
    """Initializers walk Conv/Linear modules in definition order; the three forms define them in the
    same order, so one generator seed gives all three the same draw."""
    states = []
    for f in FORMS:
        net = models.build("three_layer_convnet", form=f)
        init.initialize(net, "xavier_uniform", generator=torch.Generator().manual_seed(3))
        states.append(net.state_dict())
    for other in states[1:]:
        for k in states[0]:
            assert torch.equal(states[0][k], other[k]), k


def test_barebones_never_calls_its_modules_and_lsuv_says_so():
    net = models.build("three_layer_convnet", form="barebones")
    assert isinstance(net, ThreeLayerConvNetBarebones)
    called = []
    for m in (net.conv1, net.conv2, net.output):
        m.register_forward_hook(lambda *a: called.append(1))
    net(_inputs(1, 28))
    assert called == []
    with pytest.raises(RuntimeError, match="'conv1' was not called"):
        init.initialize(net, "lsuv", generator=torch.Generator().manual_seed(0), data=_inputs(1, 28, n=64))
    # the module and sequential forms run their modules, so lsuv works there
    for f in ("module", "sequential"):
        info = init.initialize(models.build("three_layer_convnet", form=f), "lsuv",
                               generator=torch.Generator().manual_seed(0), data=_inputs(1, 28, n=64))
        assert set(info["lsuv_var"]) == {"conv1", "conv2", "output"}


def test_three_forms_train_identically_in_the_engine():
    """Same weights, same data order, the batched engine: the three forms end at the same weights."""
    g = torch.Generator().manual_seed(0)
    n = 96
    x, y = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)
    cfg = engine.TrainConfig(batch_size=16, record=False, heldout_size=32)
    data = engine.prepare(x, y, x[:32], y[:32], cfg)
    start = models.build("three_layer_convnet")
    init.initialize(start, "kaiming", generator=torch.Generator().manual_seed(5))
    trained = {}
    for f in FORMS:
        net = models.build("three_layer_convnet", form=f)
        net.load_state_dict(start.state_dict())
        engine.train_stack([[net]], [0], data, cfg)
        trained[f] = net.state_dict()
    for k, v in trained["module"].items():
        assert not torch.equal(v, start.state_dict()[k]), f"{k} did not train"
        for f in ("sequential", "barebones"):
            torch.testing.assert_close(trained[f][k], v, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- every model x every init, real data

# Model-level inits may refuse an architecture with a one-line ValueError; these are the refusals
# we expect (dbn pre-trains RBMs for fully connected layers only). Any other refusal fails the test.
REFUSALS = {("lenet5", "dbn"), ("three_layer_convnet", "dbn")}
# Known failures, reported, not ours to fix here: LeNet5.forward computes C3 with F.conv2d (for the
# optional connection table), so lsuv's forward hook on c3 never fires. The rest of the stack still
# runs and is checked; the test is then marked xfail. (Fix: call self.c3(x) when c3_table is off.)
KNOWN_FAILURES = {}
# dbn's RBMs have sigmoid hidden units: the net they pre-train is the sigmoid one (with ReLU the
# RBM features of a 4000-unit layer can all sit below 0, and nothing but the biases moves).
ACTIVATION_FOR = {"dbn": "sigmoid"}
N_IMAGES, BATCH = 96, 32    # 3 steps: enough to see every weight move, cheap for 3.2M-weight nets


@pytest.fixture(scope="module")
def real_data():
    cache = {}

    def get(name):
        if name not in cache:
            ds = load_dataset(name, quiet=True)
            cfg = engine.TrainConfig(batch_size=BATCH, train_size=N_IMAGES, record=False, heldout_size=200)
            cache[name] = engine.prepare(ds.train_images[:2000], ds.train_labels[:2000],
                                         ds.test_images[:200], ds.test_labels[:200], cfg)
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.e2e) if n == "two_layer_fc" else n
                                  for n in models.MODELS.names()])       # (its 4,000 units: 8 s a dataset)
def test_every_model_trains_under_every_init(name, dataset, real_data):
    """A member per registered init (one stack per activation: a stack is one architecture), 96 real
    images, 3 steps. Every loss stays finite and every model moves; every init but zeros moves every
    weight."""
    torch.manual_seed(0)
    data = real_data(dataset)
    groups, refused, known = {}, [], []
    for spec in init.init_names():
        act = ACTIVATION_FOR.get(spec, "relu")
        m = models.build(name, activation=act)
        kwargs = dict(generator=torch.Generator().manual_seed(0), activation=act, data=data.x_train[:N_IMAGES])
        if (name, spec) in KNOWN_FAILURES:
            with pytest.raises(RuntimeError, match=KNOWN_FAILURES[(name, spec)]):
                init.initialize(m, spec, **kwargs)
            known.append(spec)
            continue
        try:
            init.initialize(m, spec, **kwargs)
        except ValueError as e:
            assert "\n" not in str(e)
            refused.append(spec)
            continue
        groups.setdefault(act, []).append((spec, m, copy.deepcopy(m.state_dict())))
    assert {(name, s) for s in refused} <= REFUSALS, f"{name} refused {refused}"
    assert {s for (n, s) in REFUSALS if n == name} <= set(refused)
    cfg = engine.TrainConfig(batch_size=BATCH, train_size=N_IMAGES, record=False, heldout_size=200)
    for members in groups.values():
        res = engine.train_stack([[m for _, m, _ in members]], [0], data, cfg)
        assert res.steps == 3
        for i, (spec, m, before) in enumerate(members):
            assert torch.isfinite(res.step_losses[:, 0, i]).all(), f"{spec}: non-finite loss"
            moved = {k: not torch.equal(v, before[k]) for k, v in m.state_dict().items()}
            assert any(moved.values()), f"{spec}: nothing changed"
            if spec != "zeros":
                weights = [f"{n}.weight" for n, _ in models.weight_layers(m)]
                assert all(moved[w] for w in weights), f"{spec}: unchanged {[w for w in weights if not moved[w]]}"
    if known:
        pytest.xfail(f"known failure of {name} with {', '.join(known)}: {KNOWN_FAILURES[(name, known[0])]}")


def test_doctests_run():
    import doctest

    from initlab.models import convnets

    result = doctest.testmod(convnets)
    assert result.attempted >= 1 and result.failed == 0
