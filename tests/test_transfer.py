"""Transfer learning as an initialization: freezing in the engine, the three modes, checkpoints, the
report's sentences, and ``initlab transfer`` end to end on real data (small)."""
import copy
import csv
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from initlab import cli, engine, init, models
from initlab.experiments import study, transfer, transfer_report
from initlab.experiments.study import init_generator
from initlab.experiments.transfer import TransferConfig, TransferError
from initlab.files import atomic_write_text, rows_to_csv
from initlab.runs import store
from initlab.runs.cells import cell_settings, cells_of, linked
from initlab.runs.store import config_hash


def _tiny_data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    cfg = engine.TrainConfig(batch_size=16, record=False, heldout_size=32)
    return engine.prepare(x, y, x[:32], y[:32], cfg), cfg


def _lenet(seed=0):
    m = models.build("lenet5")
    init.initialize(m, "kaiming", generator=torch.Generator().manual_seed(seed))
    return m


# ---------------------------------------------------------------- freezing in the engine


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_frozen_layers_stay_exactly_put_and_the_rest_matches_a_requires_grad_loop(optimizer):
    data, cfg = _tiny_data()
    cfg = dataclasses.replace(cfg, optimizer=optimizer, lr=1e-2 if optimizer == "sgd" else 1e-3)
    start = _lenet()
    m = copy.deepcopy(start)
    engine.train_stack([[m]], [0], data, cfg, frozen=["c1", "c3", "c5"])
    for name, p in m.named_parameters():
        same = torch.equal(p, dict(start.named_parameters())[name])
        assert same == name.startswith(("c1.", "c3.", "c5.")), name
    # the reference: the plain loop with the frozen parameters excluded from autograd
    ref = copy.deepcopy(start)
    for layer in (ref.c1, ref.c3, ref.c5):
        layer.requires_grad_(False)
    order = engine.data_order(len(data.x_train), 0, cfg.epochs)
    opt, _ = engine.make_optimizer([p for p in ref.parameters() if p.requires_grad], cfg, 8)
    for step in range(8):
        idx = order[step * 16:(step + 1) * 16]
        loss = F.cross_entropy(ref(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(dict(m.named_parameters())[name], p, rtol=1e-4, atol=1e-6)


def test_freezing_refuses_weight_decay_and_unknown_layers():
    data, cfg = _tiny_data()
    with pytest.raises(ValueError, match="weight_decay 0"):
        engine.train_stack([[_lenet()]], [0], data, engine.TrainConfig(weight_decay=1e-4, record=False),
                           frozen=["c1"])
    with pytest.raises(ValueError, match="cannot freeze c2: no such layer; layers: c1, c3, c5, f6, output"):
        engine.train_stack([[_lenet()]], [0], data, cfg, frozen=["c2"])


# ---------------------------------------------------------------- the three modes


def _target_models(cfg, seed, pre):
    """{mode or init: model} as the runner builds them: each group of ``transfer.plan`` (the target
    ones) through ``study.build_and_initialize``, starting from ``pre``."""
    out = {}
    for group in transfer.plan(cfg)[1:]:
        for spec in group.inits:
            model, _ = study.build_and_initialize(group, spec, seed, torch.rand(256, 1, 28, 28), pre)
            out[transfer.mode_of(spec, group)] = model
    return out


def test_modes_start_from_the_pretrained_weights():
    cfg = TransferConfig(target_sizes=[100])
    pre = _lenet(seed=7).state_dict()
    built = _target_models(cfg, 3, pre)
    ft, fz, rh, scratch = built["finetune"], built["freeze"], built["reinit_head"], built["kaiming"]
    for k, v in pre.items():
        assert torch.equal(ft.state_dict()[k], v) and torch.equal(fz.state_dict()[k], v)
        if k.startswith("output."):
            # the head is the kaiming scratch model's head of the same seed, bias 0
            assert torch.equal(rh.state_dict()[k], scratch.state_dict()[k])
            assert not torch.equal(rh.state_dict()[k], v) or k == "output.bias" and not v.any()
        else:
            assert torch.equal(rh.state_dict()[k], v)
    assert torch.equal(rh.output.bias, torch.zeros(10))
    expected = models.build("lenet5")
    init.initialize(expected, "kaiming", generator=init_generator(3))
    for k, v in expected.state_dict().items():
        assert torch.equal(scratch.state_dict()[k], v)          # scratch ignores the pretrained state
    assert transfer.conv_layers(ft) == ["c1", "c3", "c5"] and transfer.head_layer(ft) == "output"


def test_the_plan_pretrains_first_and_freezes_the_convolutions_in_a_stack_of_their_own():
    cfg = TransferConfig(target_sizes=[100, 1000], seeds=2)
    pre, *targets = linked(transfer.plan(cfg))
    assert pre.dataset == "fashion_mnist" and pre.keep_weights and pre.draw_offset == transfer.PRETRAIN_SEED_OFFSET
    assert pre.inits == ["kaiming"] and pre.start is None and not pre.train.record
    assert [(g.inits, g.frozen, g.train.train_size) for g in targets] == [
        (["pretrained", "pretrained:head=kaiming", "kaiming", "xavier"], [], 100),
        (["pretrained"], ["c1", "c3", "c5"], 100),
        (["pretrained", "pretrained:head=kaiming", "kaiming", "xavier"], [], 1000),
        (["pretrained"], ["c1", "c3", "c5"], 1000)]
    assert {g.start for g in targets} == {"cell:" + config_hash(cell_settings(pre))}
    # another pretraining gives other target runs: a resume never mixes them
    other = linked(transfer.plan(dataclasses.replace(cfg, pretrain_epochs=2)))
    assert other[1].start != targets[0].start
    assert [c["hash"] for c in cells_of(other[1])] != [c["hash"] for c in cells_of(targets[0])]
    ck = linked(transfer.plan(dataclasses.replace(cfg, from_checkpoint="x.pt")))
    assert len(ck) == 4 and ck[0].start.endswith("x.pt") and ck[0].dataset == "mnist"


def test_checkpoints_get_the_umask_s_mode(tmp_path):
    import os

    before = os.umask(0o027)
    try:
        path = _save(tmp_path / "a.pt", _lenet())
        rel = store.write_records(tmp_path, "h", {}, {store.WEIGHTS: b"weights"})
    finally:
        os.umask(before)
    assert path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / rel / store.WEIGHTS).stat().st_mode & 0o777 == 0o640
    assert store.verify_records(tmp_path, rel) is None
    (tmp_path / rel / store.WEIGHTS).write_bytes(b"damaged")
    assert store.verify_records(tmp_path, rel) == "weights.pt differs from its checksum"


@pytest.mark.parametrize("n, epochs", [(100, 75), (1000, 10), (10000, 1), (60000, 1)])
def test_small_subsets_train_at_least_min_steps(n, epochs):
    assert transfer.epochs_for(n, 32, 300, 1) == epochs
    assert engine.steps_for(n, engine.TrainConfig(epochs=epochs)) >= 300
    assert transfer.epochs_for(100, 32, 0, 3) == 3


# ---------------------------------------------------------------- checkpoints


def _save(path, model, name="lenet5", options=None, dataset="fashion_mnist"):
    return transfer.save_checkpoint(path, model, model_name=name, model_options=options or {"activation": "relu"},
                                    dataset=dataset, config={"seed": 0}, test_acc=0.8)


def test_checkpoint_roundtrip(tmp_path):
    m = _lenet()
    path = _save(tmp_path / "a.pt", m)
    raw = torch.load(path, weights_only=True)
    assert {"state_dict", "config", "model", "dataset"} <= set(raw) and raw["model"] == "lenet5"
    sd, info = transfer.load_checkpoint(path, "lenet5", {"activation": "relu"})
    assert info["dataset"] == "fashion_mnist" and info["test_acc"] == 0.8
    for k, v in m.state_dict().items():
        assert torch.equal(sd[k], v)


def test_incompatible_checkpoints_are_one_line_errors(tmp_path):
    relu = {"activation": "relu"}
    cases = []
    cases.append((_save(tmp_path / "conv.pt", models.build("three_layer_convnet"), name="three_layer_convnet"),
                  "holds a 'three_layer_convnet' model, but this run's model is 'lenet5'"))
    cases.append((_save(tmp_path / "tanh.pt", _lenet(), options={"activation": "tanh"}),
                  "was trained with activation='tanh', this run uses activation='relu'"))
    wide = _lenet()
    sd = wide.state_dict()
    sd["c1.weight"] = torch.zeros(8, 1, 5, 5)
    torch.save({"state_dict": sd, "model": "lenet5", "config": {}, "dataset": "mnist"}, tmp_path / "shape.pt")
    cases.append((tmp_path / "shape.pt", r"c1.weight is \(8, 1, 5, 5\) in the checkpoint, \(6, 1, 5, 5\) in the model"))
    sd = _lenet().state_dict()
    del sd["f6.bias"]
    torch.save({"state_dict": sd, "model": "lenet5", "config": {}, "dataset": "mnist"}, tmp_path / "missing.pt")
    cases.append((tmp_path / "missing.pt", "missing f6.bias; unexpected nothing"))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    cases.append((tmp_path / "other.pt", "is not an initlab checkpoint"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    cases.append((tmp_path / "junk.pt", "is not readable"))
    cases.append((tmp_path / "nope.pt", "does not exist"))
    for path, match in cases:
        with pytest.raises(TransferError, match=match) as e:
            transfer.load_checkpoint(path, "lenet5", relu)
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- the report, from files


def _fake_results(out, gap_small, gap_large, seeds=(0, 1)):
    """runs.csv/curves.csv with known accuracies: transfer better by gap_small at 100 images and by
    gap_large at 10,000; seeds differ by 0.2 pts."""
    runs, curves = [], []
    for n, base, gap in ((100, 0.70, gap_small), (10000, 0.96, gap_large)):   # (every accuracy <= 1)
        for seed in seeds:
            for name, kind, acc in (("finetune", "transfer", base + gap), ("freeze", "transfer", base - 0.1),
                                    ("kaiming", "scratch", base)):
                acc = acc + 0.002 * seed
                runs.append({"init": name, "target_images": n, "seed": seed, "kind": kind,
                             "test_acc": acc, "acc_at_0": 0.1, "acc_at_20": acc - 0.2, "acc_at_100": acc - 0.05,
                             "steps_to_90": 200 if acc >= 0.9 else None, "steps_to_97": None})
                curves += [{"init": name, "target_images": n, "seed": seed, "step": s,
                            "heldout_acc": acc * s / 300} for s in (0, 100, 200, 300)]
    atomic_write_text(out / "runs.csv", rows_to_csv(runs))
    atomic_write_text(out / "curves.csv", rows_to_csv(curves))
    atomic_write_text(out / "pretrain.csv", rows_to_csv([{"seed": 0, "source": "fashion_mnist", "test_acc": 0.85}]))
    cfg = {**dataclasses.asdict(TransferConfig()), "seed_list": [0, 1], "head_init": "kaiming",
           "plan": [{"target_images": 100, "epochs": 75, "steps": 300},
                    {"target_images": 10000, "epochs": 1, "steps": 313}]}
    atomic_write_text(out / "config.json", json.dumps(cfg))


@pytest.mark.parametrize("gap_small, gap_large", [(0.05, 0.001), (0.0, 0.03), (-0.03, 0.0)])
def test_report_sentences_follow_the_numbers(tmp_path, gap_small, gap_large):
    _fake_results(tmp_path, gap_small, gap_large)
    obs = transfer_report.observations(transfer_report.load_tables(tmp_path))
    text = " ".join(obs)
    assert f"{100 * gap_small:+.2f} pts at 100, {100 * gap_large:+.2f} pts at 10,000 images" in text
    gaps = ((100, gap_small), (10000, gap_large))
    helped = [n for n, g in gaps if g > 0.005]      # seeds differ by 0.2 pts: the 0.5-pt floor decides
    hurt = [n for n, g in gaps if g < -0.005]
    settled = [n for n, g in gaps if abs(g) <= 0.005]
    if helped:
        assert f"ends higher beyond the seed spread (by more than 2 std and 0.5 pts) at {helped[0]:,} images" in text
    else:
        assert "At no size does pretraining end higher beyond the seed spread" in text
    if hurt:
        assert f"it ends lower beyond the spread at {hurt[0]:,} images" in text
    else:
        assert "ends lower" not in text
    assert f"at {settled[0]:,} images the difference is within" in text
    assert "Frozen convolutions minus fine-tuned ones, final accuracy: " \
           f"{100 * (-0.1 - gap_small):+.2f} pts at 100 images" in text
    html_path = transfer_report.write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| 100 | finetune |" in md and html_path.read_text().count("data:image/png;base64") == 2


def test_one_seed_judges_no_difference_against_a_spread(tmp_path):
    _fake_results(tmp_path, 0.05, 0.001, seeds=(0,))
    text = " ".join(transfer_report.observations(transfer_report.load_tables(tmp_path)))
    assert "1 seed: no spread" in text and "seed std" not in text and "beyond the seed spread" not in text
    assert "+5.00 pts at 100, +0.10 pts at 10,000 images (1 seed: no spread to judge it against" in text


# ---------------------------------------------------------------- the command, on real data


@pytest.mark.e2e
@pytest.mark.slow
def test_transfer_end_to_end_on_real_data(tmp_path, capsys):
    """Pretrain on 1,024 Fashion-MNIST images, transfer to 64 MNIST images, 1 seed; then the
    saved checkpoint is reused, and an incompatible model is refused with exit code 2."""
    out = tmp_path / "run"
    argv = ["transfer", "--from", "fashion_mnist", "--to", "mnist", "--pretrain-size", "1024",
            "--target-sizes", "64", "--min-steps", "16", "--seeds", "1", "--record-every", "8",
            "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "reinit_head" in printed and "report:" in printed
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    inits = ["finetune", "reinit_head", "kaiming", "xavier", "freeze"]
    assert sorted(r["init"] for r in runs) == sorted(inits) and {r["target_images"] for r in runs} == {"64"}
    for col in ("init", "target_images", "seed", "test_acc", "steps_to_90", "steps_to_97"):
        assert col in runs[0]
    assert all(0 <= float(r["test_acc"]) <= 1 and r["steps"] == "16" for r in runs)
    # 64 images at batch 32 are 2 steps an epoch: 8 epochs make the 16 steps
    assert {r["epochs"] for r in runs} == {"8"}
    md = (out / "report.md").read_text()
    assert "Where pretraining helps" in md and "best pretrained init" in md
    with open(out / "pretrain.csv") as f:
        ckpt = out / next(csv.DictReader(f))["checkpoint"]
    assert torch.load(ckpt, weights_only=True)["dataset"] == "fashion_mnist"
    # freeze kept the convolutions of the checkpoint: same initial held-out accuracy as finetune
    first = {r["init"]: r["acc_at_0"] for r in runs}
    assert first["freeze"] == first["finetune"]

    again = tmp_path / "again"
    assert cli.main(["transfer", "--from-checkpoint", str(ckpt), "--target-sizes", "64", "--min-steps", "4",
                     "--seeds", "1", "--modes", "finetune", "--inits", "kaiming", "--out", str(again),
                     "--quiet"]) == 0
    with open(again / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["init"] for r in rows] == ["finetune", "kaiming"]
    assert not list(again.rglob("*.pt"))                     # nothing pretrained, nothing saved
    capsys.readouterr()
    assert cli.main(["transfer", "--from-checkpoint", str(ckpt), "--model", "three_layer_convnet",
                     "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a 'lenet5' model, but this run's model is 'three_layer_convnet'" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("args, message", [
    (["--modes", "distill"], "unknown mode in distill; choose from: finetune, freeze, reinit_head"),
    (["--target-sizes", "0"], "--target-sizes must be >= 1"),
    (["--from", "imagenet"], "unknown source dataset 'imagenet'; choose from: mnist, fashion_mnist, cifar10"),
    (["--inits", "kaiming:gain=2"], "gain"),
    (["--model", "mlp", "--modes", "freeze"], "freeze freezes the convolutions, and mlp has none"),
    (["--from-checkpoint", "/nonexistent/x.pt"], "checkpoint /nonexistent/x.pt does not exist"),
    (["--modes", "", "--inits", ""], "nothing to compare"),
])
def test_bad_transfer_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert cli.main(["transfer", "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("initlab: error:") and message in err


@pytest.mark.slow
def test_a_failed_pretraining_leaves_its_target_runs_queued_and_a_resume_trains_them(tmp_path, capsys, monkeypatch):
    """The target runs start from the pretraining: when it fails they wait (exit 1, never trained from
    nothing), and --resume trains the pretraining, then them."""
    real = study.build_and_initialize

    def fail_on_the_source(cfg, spec, seed, *rest):
        if cfg.dataset == "fashion_mnist":
            raise RuntimeError("simulated failure")
        return real(cfg, spec, seed, *rest)

    out = tmp_path / "t"
    argv = ["transfer", "--pretrain-size", "256", "--target-sizes", "64", "--min-steps", "4", "--seeds", "1",
            "--modes", "finetune", "--inits", "kaiming", "--record-every", "4", "--workers", "1", "--quiet",
            "--out", str(out)]
    monkeypatch.setattr(study, "build_and_initialize", fail_on_the_source)
    assert cli.main(argv) == 1
    assert "RuntimeError: simulated failure" in capsys.readouterr().err
    with store.Store(out) as s:
        assert s.counts() == {"failed": 1, "queued": 2}
    monkeypatch.setattr(study, "build_and_initialize", real)
    assert cli.main(argv + ["--resume"]) == 0
    with store.Store(out) as s:
        assert s.counts() == {"done": 3}
    with open(out / "runs.csv") as f:
        assert [r["init"] for r in csv.DictReader(f)] == ["finetune", "kaiming"]
