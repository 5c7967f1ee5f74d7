"""The cache folder and the verified IDX tensors kept there (``data.pt`` + ``manifest.json``)."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch

from initlab.data.common import DataError, _one_line
from initlab.data.idx import IdxSpec, _idx_sha256
from initlab.files import atomic_write

DATA_FILE, MANIFEST_FILE = "data.pt", "manifest.json"


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/initlab/<name>``, or ``~/.cache/initlab/<name>``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "initlab" / name


def _write_cache(spec: IdxSpec, tensors: Mapping[str, torch.Tensor], source: str) -> Path:
    """Store verified tensors (labels kept uint8, as in the IDX file) and a manifest."""
    folder = cache_dir(spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / DATA_FILE, lambda f: torch.save({r: tensors[r].to(torch.uint8) for r in spec.files}, f))
    manifest = {
        "dataset": spec.name,
        "source": source,
        "sha256": {f.filename: f.sha256 for f in spec.files.values()},
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(folder / MANIFEST_FILE, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return folder


def _read_cache(spec: IdxSpec) -> Tuple[Dict[str, torch.Tensor], str]:
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
