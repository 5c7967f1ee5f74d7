import pytest
import torch

from initlab import cli, data, files
from initlab.experiments import bonus, study


@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset("mnist", quiet=True)


def test_validation_split_is_carved_from_training_images_only(mnist):
    val = data.validation_split(mnist)
    assert len(val.train_labels) == 55_000 and len(val.test_labels) == data.VALIDATION_IMAGES
    # validation images are training images, none of them left in the split's training part
    train_rows = {bytes(x.numpy()) for x in val.train_images[:5000]}
    assert not any(bytes(x.numpy()) in train_rows for x in val.test_images[:200])
    assert torch.equal(val.test_images[0], mnist.train_images[
        torch.randperm(60_000, generator=torch.Generator().manual_seed(data.VALIDATION_SEED))[0]])


def test_verdict_needs_every_seed():
    assert bonus.verdict([0.99, 0.986]).startswith("HOLDS")
    assert bonus.verdict([0.99, 0.984]).startswith("FAILS: min 98.40 %")


def test_recipe_is_still_lenet5_for_one_epoch():
    cfg = bonus.recipe()
    assert cfg.model == "lenet5" and cfg.train.epochs == 1 and not cfg.c3_table
    study.validate(cfg)
    for name, changes in bonus.ABLATIONS:
        study.validate(bonus.with_changes(cfg, changes))


def test_bonus_command_writes_its_report(tmp_path, capsys):
    out = tmp_path / "b"
    code = cli.main(["bonus", "--seeds", "2", "--train-size", "640", "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "FAILS" in text                       # 20 steps are far from 98.5 %
    runs = files.read_csv(out / "runs.csv")
    assert [r["seed"] for r in runs] == [0, 1] and all(0 < r["test_acc"] < 1 for r in runs)
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "Verdict: FAILS" in (out / "report.md").read_text()


@pytest.mark.e2e
@pytest.mark.slow
def test_the_recipe_reaches_98_5_percent_in_one_epoch_on_real_mnist(mnist):
    cfg = bonus.with_changes(bonus.recipe(), {"seeds": 1})
    result = study.run_study(cfg, dataset=mnist, progress=False)
    assert result.runs[0]["steps"] == 1875
    assert result.runs[0]["test_acc"] >= 0.985
