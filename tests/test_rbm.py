"""RBM pre-training and the ``dbn`` init: CD-1 on real MNIST, the weights it hands to an mlp, and a
fine-tuned deep belief net that trains."""
import math

import pytest
import torch

from initlab import init, models
from initlab.data import load_dataset
from initlab.experiments import study
from initlab.init import rbm


@pytest.fixture(scope="module")
def pixels():
    """2,000 real MNIST training images as (N, 784) intensities in [0, 1]."""
    ds = load_dataset("mnist", quiet=True)
    return ds.train_images[:2000].float().div(255).flatten(1)


def test_cd1_reduces_reconstruction_error_on_mnist(pixels):
    g = torch.Generator().manual_seed(0)
    machine, info = rbm.train_rbm(pixels, 64, generator=g, batch_size=20)   # 100 CD-1 updates
    assert machine.W.shape == (64, 784) and machine.c.shape == (64,) and machine.b.shape == (784,)
    assert info["recon_error_end"] < 0.7 * info["recon_error_start"]
    assert info["recon_error_end"] == pytest.approx(machine.reconstruction_error(pixels[:rbm.ERROR_IMAGES]))


def test_cd1_update_is_the_formula():
    """One CD-1 step (one batch, no momentum history, no weight cost), recomputed by hand from the
    same random stream: W draw, batch order, hidden samples."""
    v0 = (torch.rand(5, 7, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    machine, _ = rbm.train_rbm(v0, 4, generator=torch.Generator().manual_seed(11), batch_size=5, lr=0.1,
                               momentum=0.0, weight_cost=0.0)
    replay = torch.Generator().manual_seed(11)
    start = rbm.new_rbm(7, 4, v0, replay)
    x = v0[torch.randperm(5, generator=replay)]
    q0 = torch.sigmoid(x @ start.W.T + start.c)
    h0 = torch.bernoulli(q0, generator=replay)
    v1 = torch.sigmoid(h0 @ start.W + start.b)
    q1 = torch.sigmoid(v1 @ start.W.T + start.c)
    assert torch.allclose(machine.W, start.W + 0.1 * (q0.T @ x - q1.T @ v1) / 5, atol=1e-6)
    assert torch.allclose(machine.b, start.b + 0.1 * (x - v1).mean(0), atol=1e-6)
    assert torch.allclose(machine.c, start.c + 0.1 * (q0 - q1).mean(0), atol=1e-6)


def test_greedy_stack_trains_each_layer_on_the_one_below(pixels):
    rbms, infos = rbm.pretrain_stack(pixels, [64, 32], generator=torch.Generator().manual_seed(0),
                                     batch_size=20)
    assert [i["visible"] for i in infos] == [784, 64] and [i["hidden"] for i in infos] == [64, 32]
    assert all(i["recon_error_end"] < i["recon_error_start"] for i in infos)


def test_dbn_init_fills_the_mlp_with_the_rbms(pixels):
    x = pixels.view(-1, 1, 28, 28)
    net = models.build("mlp", activation="sigmoid", width=64, depth=2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    info = init.initialize(net, "dbn:images=1000,batch_size=20", generator=torch.Generator().manual_seed(0),
                           data=x)
    assert info["pretrain_seconds"] > 0 and [r["layer"] for r in info["rbm"]] == ["fc1", "fc2"]
    assert all(r["images"] == 1000 and r["recon_error_end"] < r["recon_error_start"] for r in info["rbm"])
    for k, v in net.state_dict().items():
        assert not torch.equal(v, before[k]), k
    # the same generator gives the same RBMs, and they are what the layers hold
    rbms, _ = rbm.pretrain_stack(x[:1000].flatten(1), [64, 64], generator=torch.Generator().manual_seed(0),
                                 batch_size=20)
    assert torch.equal(net.fc1.weight, rbms[0].W) and torch.equal(net.fc1.bias, rbms[0].c)
    assert torch.equal(net.fc2.weight, rbms[1].W) and torch.equal(net.fc2.bias, rbms[1].c)
    assert float(net.output.weight.detach().std()) == pytest.approx(math.sqrt(2 / 74), rel=0.15)   # xavier
    assert torch.all(net.output.bias == 0)


def test_dbn_refuses_what_it_cannot_do(pixels):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="fully connected layers only"):
        init.initialize(models.build("lenet5"), "dbn", generator=g, data=pixels.view(-1, 1, 28, 28))
    with pytest.raises(ValueError, match="needs training images"):
        init.initialize(models.build("mlp", width=8), "dbn", generator=g)
    with pytest.raises(ValueError, match=r"inputs in \[0, 1\]"):
        init.initialize(models.build("mlp", width=8), "dbn", generator=g, data=pixels.view(-1, 1, 28, 28) - 0.5)
    with pytest.raises(study.ConfigError, match="dbn pre-trains fully connected"):
        study.validate(study.StudyConfig(inits=["dbn"], model="lenet5"))
    assert "dbn" in init.init_names() and len(init.describe("dbn")) < 200


def test_model_level_inits_get_images_drawn_with_the_run_seed():
    cfg = study.StudyConfig(model="mlp")
    cfg.train.train_size = 500
    x = torch.arange(2000.0).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)
    a = study.init_images(cfg, "lsuv", 0, x)
    assert a.shape == (study.MODEL_INIT_IMAGES, 1, 28, 28)
    assert torch.equal(a, study.init_images(cfg, "lsuv", 0, x))
    assert not torch.equal(a, study.init_images(cfg, "lsuv", 1, x))
    assert study.init_images(cfg, "dbn:images=1000", 0, x).shape[0] == 500   # capped by --train-size
    assert study.init_images(cfg, "kaiming", 0, x) is None


@pytest.mark.slow
def test_study_with_dbn_and_lsuv_trains_and_reports_init_time():
    """A DBN (784-500-500-10, sigmoid) pre-trained on 2,000 images and fine-tuned for 1 epoch on them
    (chance is 10 %)."""
    ds = load_dataset("mnist", quiet=True)
    cfg = study.StudyConfig(inits=["dbn", "lsuv"], seeds=1, model="mlp", activation="sigmoid")
    cfg.workers = 1                     # one process: this test is about the init, not the scheduling
    cfg.train.train_size = 2000
    cfg.train.record = False
    res = study.run_study(cfg, dataset=ds, progress=False)
    dbn_run, lsuv_run = res.runs
    # 63 Adam steps on 2,000 images; measured 0.69-0.70 (dbn) and 0.77-0.81 (lsuv) over 2 seeds
    assert dbn_run["test_acc"] > 0.6 and lsuv_run["test_acc"] > 0.6
    assert dbn_run["init_seconds"] > 0
    import json
    dbn_info = json.loads(dbn_run["init_info"])
    assert dbn_info["pretrain_seconds"] <= dbn_run["init_seconds"]
    assert [r["images"] for r in dbn_info["rbm"]] == [2000, 2000]
    assert set(json.loads(lsuv_run["init_info"])["lsuv_iters"]) == {"fc1", "fc2", "output"}


def test_lsuv_in_a_lenet5_study():
    """lsuv hooks every layer's module call (LeNet-5's c3 included) and gets real-shaped images."""
    cfg = study.StudyConfig(inits=["lsuv"], seeds=1)
    x = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model, info = study.build_and_initialize(cfg, "lsuv", 0, x)
    assert set(info["lsuv_iters"]) == {"c1", "c3", "c5", "f6", "output"}
