"""CIFAR-10: the python-format archive end to end, on small archives built here in the real format
(pickled dicts with b'data' uint8 (N, 3072) and b'labels', files data_batch_1..5, test_batch and
batches.meta inside cifar-10-batches-py/), with the MD5 overridden; no network is used."""
import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest
import torch

from initlab import cli, data, engine, files, init, models
from initlab.data import DATASETS, DataError, load_dataset

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
REAL_MD5 = "c58f30108f718f92721af3b95e74349a"


def cifar_batches(per_batch=4, n_test=6, seed=0):
    """{member: dict} as the CIFAR-10 python version holds them (Python-2 era pickles: protocol 2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(1, 6):
        out[f"data_batch_{k}"] = {b"batch_label": f"training batch {k} of 5".encode(),
                                  b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                                  b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                                  b"filenames": [f"img_{k}_{i}.png".encode() for i in range(per_batch)]}
    out["test_batch"] = {b"batch_label": b"testing batch 1 of 1", b"labels": list(range(n_test)),
                         b"data": rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                         b"filenames": [f"t_{i}.png".encode() for i in range(n_test)]}
    out["batches.meta"] = {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                           b"label_names": [c.encode() for c in CLASSES]}
    return out


def write_archive(path, batches, raw=None):
    """A tar.gz with each batch pickled under cifar-10-batches-py/; ``raw`` adds members as bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        members = {name: pickle.dumps(d, protocol=2) for name, d in batches.items()}
        members.update(raw or {})
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


def spec_with(md5):
    return dataclasses.replace(DATASETS.get("cifar10"), md5=md5)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """An empty cache, no INITLAB_DATA_DIR, and no network: a download attempt fails like a dead link."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("INITLAB_DATA_DIR", raising=False)

    def no_network(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data.sources, "_fetch_url", no_network)


@pytest.fixture
def archive(tmp_path):
    batches = cifar_batches()
    folder = tmp_path / "downloads"
    md5 = write_archive(folder / "cifar-10-python.tar.gz", batches)
    return folder, batches, md5


def test_spec_is_the_published_archive():
    spec = DATASETS.get("cifar10")
    assert spec.md5 == REAL_MD5 and spec.filename == "cifar-10-python.tar.gz"
    assert spec.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert "cifar10" in data.dataset_names() and "mnist" in data.dataset_names()


def test_archive_loads_with_channel_planes_in_order(archive):
    folder, batches, md5 = archive
    ds = load_dataset(spec_with(md5), data_dir=folder, quiet=True)
    assert ds.source == f"dir {folder}"
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (6, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.classes == tuple(CLASSES)
    # batch order is kept: image 4 is the first of data_batch_2
    row = batches["data_batch_2"][b"data"][0]
    img = ds.train_images[4]
    for c in range(3):   # the row is the R plane, then G, then B; each plane row-major
        assert torch.equal(img[c], torch.from_numpy(row[1024 * c:1024 * (c + 1)].reshape(32, 32)))
    assert img[1, 2, 5] == row[1024 + 2 * 32 + 5]
    labels = sum((batches[f"data_batch_{k}"][b"labels"] for k in range(1, 6)), [])
    assert ds.train_labels.tolist() == labels and ds.test_labels.tolist() == list(range(6))


def test_wrong_md5_is_a_clear_one_line_error(archive):
    folder, _, md5 = archive
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", data_dir=folder, quiet=True)   # the published MD5 != our archive's
    msg = str(e.value)
    assert "\n" not in msg and "md5 mismatch" in msg
    assert f"expected {REAL_MD5}, got {md5}" in msg and "cifar-10-python.tar.gz" in msg


def test_without_network_says_where_to_put_the_file(monkeypatch):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", quiet=True)
    msg = str(e.value)
    cache = data.cache_dir("cifar10")
    assert "\n" not in msg and "download failed" in msg and "name resolution" in msg
    assert f"put cifar-10-python.tar.gz in {cache}/" in msg and "--data-dir" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg and REAL_MD5 in msg


def test_named_folder_without_the_archive_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"has no cifar-10-python.tar.gz; download"):
        load_dataset("cifar10", data_dir=tmp_path, quiet=True)


def test_download_is_verified_then_cached(archive, monkeypatch):
    folder, _, md5 = archive
    payload = (folder / "cifar-10-python.tar.gz").read_bytes()
    calls = []
    monkeypatch.setattr(data.sources, "_fetch_url", lambda url: calls.append(url) or payload)
    spec = spec_with(md5)
    ds = load_dataset(spec, quiet=True)
    cached = data.cache_dir("cifar10") / "cifar-10-python.tar.gz"
    assert calls == [spec.url] and cached.read_bytes() == payload
    assert ds.source.startswith("cache ") and "from url" in ds.source
    again = load_dataset(spec, quiet=True)                     # from the cache: no second download
    assert calls == [spec.url] and torch.equal(again.train_images, ds.train_images)
    report = data.info(spec)
    assert report["verified"] and report["train"] == 20 and report["test_label_counts"][:6] == [1] * 6


def test_download_with_wrong_md5_is_not_kept(archive, monkeypatch):
    folder, _, _ = archive
    payload = (folder / "cifar-10-python.tar.gz").read_bytes()
    monkeypatch.setattr(data.sources, "_fetch_url", lambda url: payload)
    with pytest.raises(DataError, match=f"md5 mismatch: expected {REAL_MD5}.*not kept"):
        load_dataset("cifar10", quiet=True)
    assert not (data.cache_dir("cifar10") / "cifar-10-python.tar.gz").exists()


def test_damaged_cache_is_refused(archive):
    folder, _, md5 = archive
    cached = data.cache_dir("cifar10") / "cifar-10-python.tar.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((folder / "cifar-10-python.tar.gz").read_bytes()[:-10])
    with pytest.raises(DataError, match="md5 mismatch.*delete it"):
        load_dataset(spec_with(md5), quiet=True)
    assert "md5 mismatch" in data.info(spec_with(md5))["error"]


def test_fetch_copies_a_named_folder_into_the_cache(archive):
    folder, _, md5 = archive
    got = data.fetch(spec_with(md5), data_dir=folder, quiet=True)
    assert got == data.cache_dir("cifar10")
    assert (got / "cifar-10-python.tar.gz").read_bytes() == (folder / "cifar-10-python.tar.gz").read_bytes()
    assert load_dataset(spec_with(md5), quiet=True).source.startswith("cache ")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("bad, match", [
    ({"data_batch_3": pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)}, "refusing to load posix.getcwd"),
    ({"data_batch_3": b"not a pickle"}, "data_batch_3 is not a readable pickle"),
    ({"data_batch_3": pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2)},
     r"data_batch_3 is not a CIFAR batch: expected b'data' uint8 \(N, 3072\)"),
    ({"test_batch": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2)},
     r"test labels outside 0..9"),
], ids=["hostile pickle", "garbage", "wrong shape", "bad label"])
def test_malformed_batches_are_one_line_errors(tmp_path, bad, match):
    batches = cifar_batches()
    for name in bad:
        batches.pop(name)
    md5 = write_archive(tmp_path / "cifar-10-python.tar.gz", batches, raw=bad)
    with pytest.raises(DataError, match=match) as e:
        load_dataset(spec_with(md5), data_dir=tmp_path, quiet=True)
    assert "\n" not in str(e.value)


def test_missing_member_is_named(tmp_path):
    batches = cifar_batches()
    del batches["data_batch_5"]
    md5 = write_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    with pytest.raises(DataError, match="has no cifar-10-batches-py/data_batch_5"):
        load_dataset(spec_with(md5), data_dir=tmp_path, quiet=True)


def test_cli_data_fetch_without_network_is_one_line_exit_2(capsys):
    assert cli.main(["data", "fetch", "cifar10"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()   # progress ("fetching ..."), then the error
    assert lines[0] == f"initlab: fetching cifar10 from {DATASETS.get('cifar10').url}"
    assert len(lines) == 2 and lines[1].startswith("initlab: error: cifar10:") and "put cifar-10-python" in lines[1]


def test_float_images_for_every_layout():
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8, generator=g)
    x = engine.to_float_images(gray, False, "cpu")
    assert x.shape == (4, 1, 28, 28) and torch.equal(x, gray.float().div(255).unsqueeze(1))   # MNIST as before
    xn = engine.to_float_images(gray, True, "cpu")
    torch.testing.assert_close(xn, (gray.float().div(255).unsqueeze(1) - engine.MNIST_MEAN) / engine.MNIST_STD)
    nchw = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=g)
    a = engine.to_float_images(nchw, False, "cpu")
    b = engine.to_float_images(nchw.permute(0, 2, 3, 1), False, "cpu")                    # channels last
    assert a.shape == b.shape == (4, 3, 32, 32) and torch.equal(a, b) and b.is_contiguous()


@pytest.mark.parametrize("name, options", [("three_layer_convnet", {}), ("two_layer_fc", {"hidden": 256})])
def test_cifar_trains_end_to_end(archive, name, options):
    """Generated archive -> load_dataset -> engine.prepare -> a CIFAR-shaped model trained by the engine."""
    folder, _, md5 = archive
    ds = load_dataset(spec_with(md5), data_dir=folder, quiet=True)
    cfg = engine.TrainConfig(batch_size=8, epochs=2, record_every=2, heldout_size=6, probe_size=4)
    d = engine.prepare(ds.train_images, ds.train_labels, ds.test_images, ds.test_labels, cfg)
    assert d.x_train.shape == (20, 3, 32, 32)
    stack = []
    for spec in ("kaiming", "xavier"):
        m = models.build(name, in_channels=3, image_size=32, **options)   # a narrow fc: the path is the point
        init.initialize(m, spec, generator=torch.Generator().manual_seed(0))
        stack.append(m)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in stack]
    res = engine.train_stack([stack], [0], d, cfg)
    assert res.steps == 6 and torch.isfinite(res.step_losses).all()
    assert {r["step"] for r in res.records.curves} >= {0, 2, 4, 6}
    for m, b in zip(stack, before):
        assert all(not torch.equal(v, b[k]) for k, v in m.state_dict().items())


def test_study_runs_on_cifar_from_the_command_line(archive, monkeypatch, tmp_path, capsys):
    folder, _, md5 = archive
    monkeypatch.setitem(DATASETS._items, "cifar10", spec_with(md5))
    out = tmp_path / "study"
    code = cli.main(["study", "--dataset", "cifar10", "--model", "three_layer_convnet",
                     "--data-dir", str(folder), "--inits", "kaiming", "xavier", "--seeds", "1",
                     "--batch-size", "4", "--workers", "1", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    runs = files.read_csv(out / "runs.csv")
    assert {r["init"] for r in runs} == {"kaiming", "xavier"} and all(r["dataset"] == "cifar10" for r in runs)
    # LeNet-5 is built for 1x28x28: asking for it on CIFAR is a one-line error
    assert cli.main(["study", "--dataset", "cifar10", "--out", str(tmp_path / "x")]) == 2
    assert "takes 1x28x28 images" in capsys.readouterr().err
