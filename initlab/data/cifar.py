"""CIFAR-10: one tar.gz of pickled batches with a published MD5, verified and kept as it is.

CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images") ships as one
tar.gz of Python pickles with a published MD5, not as IDX files, so it has its own spec and
loader. The archive itself is what is verified and kept: ``load_dataset("cifar10")`` looks for
``cifar-10-python.tar.gz`` in the folder you name (``data_dir`` / ``INITLAB_DATA_DIR``), else in
the cache folder, else downloads it there; the MD5 is checked on every load (about 0.3 s).
"""
from __future__ import annotations

import hashlib
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from initlab.data import sources
from initlab.data.cache import cache_dir
from initlab.data.common import ENV_DATA_DIR, DataError, Dataset, _chosen_dir, _one_line, _say, normalization
from initlab.data.sources import _tar_member
from initlab.files import atomic_write


@dataclass(frozen=True)
class ArchiveSpec:
    """A dataset shipped as one tar.gz of pickled batches (CIFAR-10's "python version").

    Each batch is a pickled dict with ``b"data"``: uint8 (N, C*H*W), rows holding the C planes
    one after the other, each plane row-major; and ``b"labels"``: N ints. ``meta`` holds
    ``b"label_names"``. All paths are inside ``folder`` in the archive.
    """

    name: str
    filename: str  # the archive, as its authors name it
    md5: str  # of the archive file, as published
    url: str
    folder: str
    train_batches: Tuple[str, ...]
    test_batches: Tuple[str, ...]
    meta: str
    classes: Tuple[str, ...]
    image_shape: Tuple[int, int, int] = (3, 32, 32)  # (C, H, W)
    train_size: Optional[int] = None  # images in the training split (as for every registry entry)
    test_size: Optional[int] = None  # images in the test split
    mean: Optional[Tuple[float, ...]] = None  # per-channel pixel mean of the training set, [0, 1] units
    std: Optional[Tuple[float, ...]] = None  # per-channel pixel std of the training set, [0, 1] units

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


class _SafeUnpickler:
    """Unpickle only what CIFAR's batches hold (dicts, lists, bytes, numpy uint8 arrays); any other
    global in the stream is refused, so a damaged or hostile archive cannot run code."""

    @staticmethod
    def load(stream) -> object:
        import codecs
        import pickle

        import numpy as np

        reconstruct = np.zeros(1).__reduce__()[0]  # numpy's array rebuilder, whatever its module
        allowed = {("numpy.core.multiarray", "_reconstruct"): reconstruct,
                   ("numpy._core.multiarray", "_reconstruct"): reconstruct,
                   ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                   ("_codecs", "encode"): codecs.encode}

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in allowed:
                    raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
                return allowed[(module, name)]

        return Restricted(stream, encoding="bytes").load()


def _read_archive(spec: ArchiveSpec, path: Path, origin: str) -> Dict[str, object]:
    """Parse a verified archive into uint8 (N, C, H, W) images, int64 labels and class names."""
    import numpy as np

    def batch(tar: tarfile.TarFile, member: str) -> dict:
        f = _tar_member(tar, f"{spec.folder}/{member}", f"{origin}: the archive")
        try:
            d = _SafeUnpickler.load(f)
        except Exception as e:  # a damaged pickle fails in many ways
            raise DataError(f"{origin}: {member} is not a readable pickle ({_one_line(e)})") from None
        if not isinstance(d, dict):
            raise DataError(f"{origin}: {member} holds a {type(d).__name__}, expected a dict")
        return d

    c, h, w = spec.image_shape
    out: Dict[str, object] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for split, members in (("train", spec.train_batches), ("test", spec.test_batches)):
                images, labels = [], []
                for member in members:
                    d = batch(tar, member)
                    x, y = d.get(b"data"), d.get(b"labels")
                    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
                            or x.shape[1] != c * h * w or not isinstance(y, list) or len(y) != len(x):
                        raise DataError(f"{origin}: {member} is not a CIFAR batch: expected b'data' "
                                        f"uint8 (N, {c * h * w}) and b'labels' a list of N ints")
                    images.append(x.reshape(-1, c, h, w))   # each row: C planes of H x W, row-major
                    labels.extend(y)
                out[f"{split}_images"] = torch.from_numpy(np.concatenate(images))
                out[f"{split}_labels"] = torch.tensor(labels, dtype=torch.int64)
            names = batch(tar, spec.meta).get(b"label_names")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"{origin}: cannot read the archive ({_one_line(e)})") from None
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names or spec.classes)
    for split in ("train", "test"):
        y = out[f"{split}_labels"]
        if len(y) and not (0 <= int(y.min()) and int(y.max()) < len(classes)):
            raise DataError(f"{origin}: {split} labels outside 0..{len(classes) - 1}")
    out["classes"] = classes
    return out


def _archive_dataset(spec: ArchiveSpec, path: Path, source: str) -> Dataset:
    got = _md5(path)
    if got != spec.md5:
        raise DataError(f"{spec.name}: {path}: md5 mismatch: expected {spec.md5}, got {got}; the file "
                        f"is damaged or not the published archive: delete it and download {spec.url} again")
    t = _read_archive(spec, path, str(path))
    return Dataset(spec.name, t["train_images"], t["train_labels"], t["test_images"], t["test_labels"],
                   t["classes"], source, *normalization(spec.mean, spec.std, t["train_images"]))


def _archive_help(spec: ArchiveSpec) -> str:
    return (f"download {spec.url} (md5 {spec.md5}) and put {spec.filename} in "
            f"{cache_dir(spec.name)}/ or in a folder passed with --data-dir or ${ENV_DATA_DIR}")


def _fetch_archive(spec: ArchiveSpec, data_dir, quiet: bool, force: bool = False) -> Tuple[Path, str]:
    """The archive's path and a label of where it came from: the named folder, else the cache,
    else a fresh download into the cache (verified before it is kept)."""
    folder = _chosen_dir(data_dir)
    if folder is not None:
        path = folder / spec.filename
        if not path.is_file():
            raise DataError(f"{spec.name}: {folder} has no {spec.filename}; {_archive_help(spec)}")
        return path, f"dir {folder}"
    path = cache_dir(spec.name) / spec.filename
    if path.is_file() and not force:
        return path, f"cache {path.parent}"
    _say(quiet, f"fetching {spec.name} from {spec.url}")
    try:
        payload = sources._fetch_url(spec.url)   # through the module: one stub there takes every download offline
    except (OSError, ValueError) as e:
        raise DataError(f"{spec.name}: {spec.filename} is not in the cache and the download failed "
                        f"({_one_line(e)}); {_archive_help(spec)}") from None
    got = hashlib.md5(payload).hexdigest()
    if got != spec.md5:
        raise DataError(f"{spec.name}: downloaded {spec.url}: md5 mismatch: expected {spec.md5}, "
                        f"got {got}; not kept")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(payload))
    _say(quiet, f"cached {spec.name} in {path.parent}")
    return path, f"cache {path.parent} (from url {spec.url})"


def _archive_info(spec: ArchiveSpec) -> dict:
    path = cache_dir(spec.name) / spec.filename
    out = {"name": spec.name, "cache_dir": str(path.parent), "present": path.is_file(),
           "verified": False, "error": None, "source": None, "classes": list(spec.classes),
           "train": None, "test": None, "test_label_counts": None, "md5": {spec.filename: spec.md5}}
    if out["present"]:
        try:
            ds = _archive_dataset(spec, path, f"cache {path.parent}")
        except DataError as e:
            out["error"] = str(e)
        else:
            counts = torch.bincount(ds.test_labels, minlength=len(ds.classes))
            out.update(verified=True, source=ds.source, train=len(ds.train_labels),
                       test=len(ds.test_labels), test_label_counts=counts.tolist())
    return out


def _fetch_archive_to_cache(spec: ArchiveSpec, data_dir, force: bool, quiet: bool) -> Path:
    """``fetch`` for an archive: verify it (MD5 and a full parse); one from a named folder is
    copied into the cache."""
    path, source = _fetch_archive(spec, data_dir, quiet, force)
    _archive_dataset(spec, path, source)
    folder = cache_dir(spec.name)
    if path.parent != folder:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / spec.filename, lambda f: f.write(path.read_bytes()))
        _say(quiet, f"cached {spec.name} in {folder}")
    return folder
