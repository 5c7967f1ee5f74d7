"""initlab probe: the measured facts of signal propagation, and the variance formula against them."""
import math

import pytest
import torch

from initlab import activations, init, models
from initlab.cli import main
from initlab.data import load_dataset
from initlab.experiments import probe, probe_report
from initlab.files import read_csv


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", quiet=True)


@pytest.fixture(scope="module")
def relu_rows(mnist):
    """Real MNIST, 256 images, 20 hidden layers of 256 units, one weight draw."""
    def run(inits, acts):
        cfg = probe.ProbeConfig(inits=inits, activations=acts, width=256, depth=20, images=256, seeds=1)
        return probe.run_probe(cfg, dataset=mnist, progress=False)
    return (run(["kaiming", "xavier", "uniform", "normal:std=0.1"], ["relu"])
            + run(["kaiming", "xavier", "orthogonal"], ["linear"]))


def _spread(rows, init_name, act):
    (v,) = [v for (i, a, _), v in probe_report.spread(rows).items() if i == init_name and a == act]
    return v


# --------------------------------------------------------------------------------------------------
# The signal-propagation facts, measured on real images
# --------------------------------------------------------------------------------------------------

def test_relu_kaiming_keeps_the_forward_std(relu_rows):
    v = _spread(relu_rows, "kaiming", "relu")
    assert v["layers"] == 20
    assert 0.5 <= v["ratio"] <= 2.0 and v["kept"]


def test_relu_xavier_halves_the_variance_per_layer(relu_rows):
    # fan_in = fan_out = 256: Var(w) = 1/256, ReLU halves E[y^2]: std x 1/sqrt(2) per layer
    expected = 2 ** (-19 / 2)
    v = _spread(relu_rows, "xavier", "relu")
    assert expected / 3 <= v["ratio"] <= expected * 3


def test_relu_fixed_scale_inits_explode(relu_rows):
    assert _spread(relu_rows, "uniform", "relu")["ratio"] > 1e6        # Var U(-1,1) = 1/3 >> 2/256
    normal = _spread(relu_rows, "normal:std=0.1", "relu")              # 256 * 0.01 / 2 = 1.28 per layer
    assert not normal["kept"] and normal["ratio"] > 2


def test_linear_xavier_and_orthogonal_keep_the_signal(relu_rows):
    assert _spread(relu_rows, "xavier", "linear")["kept"]
    assert _spread(relu_rows, "orthogonal", "linear")["maxmin"] < 1.01   # orthogonal: exactly norm-preserving
    assert _spread(relu_rows, "kaiming", "linear")["ratio"] > 100         # 2x the variance per layer


def test_prediction_matches_measurement_for_relu_and_linear(relu_rows):
    errors = probe_report.prediction_error(relu_rows)
    for (i, a), factor in errors.items():
        assert factor < 1.6, (i, a, factor)
    assert all(r["prediction"] == "exact" for r in relu_rows)


def test_backward_prediction_for_relu(relu_rows):
    for r in relu_rows:
        if r["init"] in ("kaiming", "xavier") and r["activation"] == "relu":
            m, p = r["backward_std"], r["predicted_backward_std"]
            assert max(m / p, p / m) < 1.6


def test_rows_have_the_columns_and_the_variance_source(relu_rows):
    for col in ("init", "activation", "layer", "forward_std", "backward_std", "predicted_std"):
        assert col in relu_rows[0]
    kaiming = [r for r in relu_rows if r["init"] == "kaiming" and r["activation"] == "relu"]
    assert [r["layer"] for r in kaiming] == list(range(1, 22))
    assert kaiming[1]["weight_var"] == pytest.approx(2 / 256) and kaiming[1]["var_source"] == "formula"


def test_report_sentences_come_from_the_rows(relu_rows):
    text = " ".join(probe_report.observations(relu_rows, ["kaiming", "xavier", "uniform"], ["relu"]))
    kept = text.split("within x2")[1].split(";")[0]
    assert "kaiming" in kept and "xavier" not in kept
    assert "shrinks: xavier" in text and "grows: uniform" in text
    # change the data, the sentence changes
    flipped = [dict(r, forward_std=1.0) if r["init"] == "xavier" else r for r in relu_rows]
    kept = " ".join(probe_report.observations(flipped, ["xavier"], ["relu"])).split("within x2")[1]
    assert kept.split(";")[0].strip().startswith("over all 20 hidden layers on every seed: xavier")


# --------------------------------------------------------------------------------------------------
# The formula, checked where it is exact: in expectation over weight draws
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("conv", [False, True], ids=["fc", "conv"])
@pytest.mark.parametrize("act_name", ["relu", "linear", "very_leaky_relu"])
def test_prediction_is_the_expectation_over_weight_draws(mnist, conv, act_name):
    """E_w[y_l^2] = n Var(w) E[x_{l-1}^2] (+ phi of the activation) holds exactly in expectation: the
    mean over 200 draws of a narrow net's mean-square outputs must match the prediction within 4
    standard errors (conv: with the zero-padding border effect)."""
    act = probe.get_activation(act_name)
    x = probe.probe_batches(mnist, 4, 0)[0][:, :, :12, :12] if conv else probe.probe_batches(mnist, 8, 0)[0]
    y = torch.zeros(len(x), dtype=torch.long)
    draws, ms, pred = 200, [], None
    for seed in range(draws):
        net = models.MLP(activation=act, width=16, depth=4, conv=conv, image_size=x.shape[-1])
        init.initialize(net, "kaiming", generator=torch.Generator().manual_seed(seed))
        layers, x_sq, g_sq = probe.measure(net, x, y)
        ms.append(torch.tensor([lm.forward_rms ** 2 for lm in layers], dtype=torch.float64))
        if pred is None:
            w_sq = [probe.theoretical_second_moment("kaiming", lm.module.weight.shape, "relu") for lm in layers]
            pred = torch.tensor(probe.predict(layers, w_sq, act, x_sq, g_sq)[0], dtype=torch.float64) ** 2
    ms = torch.stack(ms)                                          # (draws, layers)
    mean, se = ms.mean(0), ms.std(0) / draws ** 0.5
    assert torch.all((mean - pred).abs() < 4 * se + 0.01 * pred), (mean / pred, se / pred)


def test_moments_closed_forms_and_quadrature():
    q = torch.tensor([0.5, 2.0, 30.0])
    phi, psi = probe.moments(activations.get("relu"), q)
    assert torch.allclose(phi, q.double() / 2) and torch.allclose(psi, torch.full_like(psi, 0.5))
    # the quadrature path on ReLU itself (disguised) agrees with the closed form to 1 %
    generic = activations.Activation("relu_q", activations.get("relu").fn, "custom")
    phi_q, psi_q = probe.moments(generic, q)
    assert torch.allclose(phi_q, phi, rtol=0.01) and torch.allclose(psi_q, psi, rtol=0.01)
    # tanh against Monte Carlo
    z = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    phi_t, psi_t = probe.moments(activations.get("tanh"), torch.tensor([1.0]))
    assert float(phi_t) == pytest.approx(float(torch.tanh(z).pow(2).mean()), rel=0.01)
    assert float(psi_t) == pytest.approx(float((1 - torch.tanh(z) ** 2).pow(2).mean()), rel=0.01)
    # saturated: for q >> 1, E[tanh'(z)^2] -> (1/sqrt(2 pi q)) * integral of sech^4 = 4/3 / sqrt(2 pi q)
    phi_s, psi_s = probe.moments(activations.get("tanh"), torch.tensor([1e4]))
    assert float(psi_s) == pytest.approx(4 / 3 / math.sqrt(2 * math.pi * 1e4), rel=0.01)
    assert float(phi_s) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("name", list(probe.WEIGHT_SECOND_MOMENT))
@pytest.mark.parametrize("shape", [(384, 256), (64, 32, 3, 3)], ids=["linear", "conv"])
def test_theoretical_weight_variance_matches_the_draw(name, shape):
    w = torch.empty(shape)
    fn = init.INITIALIZERS.get(name)
    fn(w, generator=torch.Generator().manual_seed(0), activation="relu")
    theory = probe.theoretical_second_moment(name, shape, "relu")
    assert float(w.double().pow(2).mean()) == pytest.approx(theory, rel=0.04, abs=1e-12)


def test_data_dependent_inits_use_the_empirical_variance(mnist):
    cfg = probe.ProbeConfig(inits=["lsuv"], activations=["relu"], width=64, depth=5, images=64, seeds=1)
    rows = probe.run_probe(cfg, dataset=mnist, progress=False)
    assert {r["var_source"] for r in rows} == {"empirical"}
    hidden = [r["forward_std"] for r in rows if r["hidden"]]
    assert all(s == pytest.approx(1.0, abs=0.1) for s in hidden)   # lsuv's unit variance, on other images


# --------------------------------------------------------------------------------------------------
# Command line and files
# --------------------------------------------------------------------------------------------------

def _cli(capsys, *args):
    """Run the CLI in this process; (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,message", [
    (["--activations", "relu", "swish"], "unknown activation 'swish'"),
    (["--inits", "kaiming", "he_normal"], "unknown initializer 'he_normal'"),
    (["--depth", "0"], "--depth must be >= 1"),
    (["--conv", "--inits", "dbn"], "dbn pre-trains fully connected layers only"),
])
def test_probe_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    code, _, err = _cli(capsys, "probe", *args, "--out", str(tmp_path / "p"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("initlab: error:") and message in err
    assert not (tmp_path / "p").exists()          # refused before any output folder is made


def test_probe_command_writes_csv_plot_and_report(tmp_path, capsys):
    out = tmp_path / "p"
    code, stdout, err = _cli(capsys, "probe", "--inits", "kaiming", "xavier", "--activations", "relu,tanh",
                             "--width", "64", "--depth", "6", "--images", "64", "--seeds", "2",
                             "--out", str(out), "--quiet")
    assert code == 0, err
    assert "relu: within x2" in stdout
    rows = read_csv(out / "probe.csv")
    assert len(rows) == 2 * 2 * 2 * 7
    assert {"init", "activation", "layer", "forward_std", "backward_std", "predicted_std"} <= set(rows[0])
    assert (out / "probe.png").stat().st_size > 10_000
    md = (out / "report.md").read_text()
    assert "relu: within x2" in md and "| kaiming |" in md
    assert "data:image/png;base64," in (out / "report.html").read_text()
    code, _, err = _cli(capsys, "probe", "--inits", "kaiming", "--activations", "relu", "--out", str(out))
    assert code == 2 and "already holds results" in err


def test_the_probe_says_where_each_init_stands_in_the_mean_field_picture(tmp_path, capsys):
    from initlab import cli

    out = tmp_path / "probe"
    assert cli.main(["probe", "--inits", "xavier", "kaiming", "--activations", "relu", "tanh", "--seeds", "1",
                     "--depth", "4", "--width", "64", "--images", "32", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    md = (out / "report.md").read_text()
    for line, expected in (("relu, mean-field", ["xavier (sigma_w^2 1): ordered", "kaiming (sigma_w^2 2): critical"]),
                           ("tanh, mean-field", ["xavier (sigma_w^2 1): critical", "kaiming (sigma_w^2 2): chaotic"])):
        sentence = next(s for s in md.splitlines() if line in s)
        assert all(e in sentence for e in expected) and sentence[2:] in text
