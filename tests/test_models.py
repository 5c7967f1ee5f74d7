import pytest
import torch

from initlab import activations, cli, init, models


def test_lenet5_shapes_and_parameter_count():
    m = models.build("lenet5")
    logits, acts = m(torch.rand(3, 1, 28, 28), return_activations=True)
    assert logits.shape == (3, 10)
    assert acts["c1"].shape == (3, 6, 28, 28)      # 32x32 padded input, 5x5 conv
    assert acts["c3"].shape == (3, 16, 10, 10)
    assert acts["c5"].shape == (3, 120)
    assert acts["f6"].shape == (3, 84)
    # 156 + 2,416 + 48,120 + 10,164 + 850 (LeCun et al. 1998 without the RBF output layer)
    assert models.count_parameters(m) == 61_706
    assert [n for n, _ in models.weight_layers(m)] == ["c1", "c3", "c5", "f6", "output"]


def test_c3_connection_table_has_60_connections_and_masked_weights_get_no_gradient():
    mask = models.c3_connection_mask()
    assert int(mask.sum()) == 60
    assert [int(mask[:, i].sum()) for i in range(6)] == [10, 10, 10, 10, 10, 10]
    m = models.build("lenet5", c3_table=True)
    assert models.count_parameters(m) == 61_706 - 36 * 25
    m(torch.rand(4, 1, 28, 28)).sum().backward()
    grad = m.c3.weight.grad
    assert torch.all(grad[mask.expand_as(grad) == 0] == 0)
    assert grad[mask.expand_as(grad) == 1].abs().sum() > 0


def test_max_pool_differs_from_avg_and_bad_pool_is_an_error():
    torch.manual_seed(0)
    a = models.build("lenet5", pool="avg")
    b = models.build("lenet5", pool="max")
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 1, 28, 28)
    assert not torch.allclose(a(x), b(x))
    with pytest.raises(ValueError, match="avg, max"):
        models.build("lenet5", pool="median")


@pytest.mark.parametrize("name", activations.ACTIVATIONS.names())
def test_every_activation_builds_a_finite_lenet5(name):
    m = models.build("lenet5", activation=name)
    assert m.act.name == name
    assert torch.isfinite(m(torch.rand(2, 1, 28, 28))).all()


def test_scaled_tanh_is_lecuns():
    x = torch.tensor([1.0, -1.0])
    assert torch.allclose(activations.scaled_tanh(x), torch.tensor([1.0, -1.0]), atol=1e-4)


def test_summary_lists_layers_and_total():
    text = models.summary(models.build("lenet5"))
    assert "c1" in text and "6x28x28" in text and "61,706" in text


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="choose from: .*lenet5"):
        models.build("alexnet")


@pytest.mark.parametrize("name", activations.ACTIVATIONS.names())
def test_every_activation_has_a_gain_and_orthogonal_init_works_with_it(name):
    act = activations.get(name)
    assert init.calculate_gain(name) == pytest.approx(init.calculate_gain(act.gain_key, act.gain_param))
    m = models.build("lenet5", activation=name)
    init.initialize(m, "orthogonal", generator=torch.Generator().manual_seed(0), activation=name)
    w = m.f6.weight
    assert torch.allclose(w @ w.T, init.calculate_gain(name) ** 2 * torch.eye(84), atol=1e-4)


def test_inits_command_lists_the_dbn(capsys):
    assert cli.main(["inits"]) == 0
    assert "dbn" in capsys.readouterr().out
